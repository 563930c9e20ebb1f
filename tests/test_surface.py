"""The public face: `gantui.Run` is the user's object only, every rank gets the same surface, and
the adapters (TensorBoard, Lightning) use nothing else."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import gantui
from gantui.run.loop import Run
from gantui.run.nullrun import NullRun

PACKAGE = Path(gantui.__file__).parent


def public(cls: type) -> dict[str, str]:
    """Each public name of a class (and the context manager's), with its signature when callable."""
    names = [n for n in dir(cls) if not n.startswith("_")] + ["__enter__", "__exit__"]
    shown = {}
    for name in names:
        value = inspect.getattr_static(cls, name)
        if callable(value):
            shown[name] = str(inspect.signature(value)).replace("'", "")
        else:
            shown[name] = "attribute"
    return shown


def test_a_run_shows_the_users_calls_and_no_machinery():
    assert gantui.Run is Run
    assert set(public(Run)) == {"log", "log_images", "poll", "should_stop", "on_save", "on_set", "tunable", "config",
                                "notice", "flush", "finish", "path", "step", "ranks_agree", "steer_with_poll",
                                "__enter__", "__exit__"}


def test_the_run_a_rank_without_a_process_group_gets_has_exactly_runs_surface():
    """Under torchrun without torch.distributed (and where a run cannot be opened) `init` returns a
    NullRun: the same names, and the same calls with the same parameters."""
    mine, null = public(Run), public(NullRun)
    assert set(mine) == set(null)
    for name, signature in mine.items():
        assert (signature == "attribute") == (null[name] == "attribute"), name  # a call on both, or on neither
        assert signature.split(" ->")[0] == null[name].split(" ->")[0], name


def test_the_adapters_use_only_the_runs_public_surface():
    """No `run._x` in tensorboard.py or lightning.py (the logger's own `self._run` is its attribute,
    not the run's): a private call there would mean the surface lacks something."""
    for module in ("tensorboard.py", "lightning.py"):
        tree = ast.parse((PACKAGE / module).read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
                continue
            owner = node.value
            named = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
            assert named not in ("run", "_run", "experiment"), f"{module}:{node.lineno}: {named}.{node.attr}"
