"""The live evaluation: rows in metrics.jsonl, events, the mode-collapse warning, the Quality pane."""
from __future__ import annotations

import io
import json
import math
import threading
import time

import pytest
import torch

from gantui.run import events as ev
from gantui.common import format_quality
from gantui.engine.checkpoint import load_checkpoint
from gantui.engine.monitor import COLLAPSE_EVALS, QUALITY_KEYS
from gantui.engine.trainer import Trainer
from gantui.evaluation import metrics
from gantui.evaluation.classifier import EvaluatorError
from gantui.session import run_headless
from support import make_app, refused, wait_for


def quality_rows(out) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if row.get("event") == "quality"]


def test_evaluations_land_in_metrics_and_the_log(tiny_config, tmp_path):
    config = tiny_config(steps=10, eval_every=4, eval_n=200)
    printed = io.StringIO()
    assert run_headless(config, out=printed) == 0
    rows = quality_rows(tmp_path / "run")
    assert [r["step"] for r in rows] == [4, 8, 10]  # every 4 steps, and the finished run's figures
    for row in rows:
        assert set(QUALITY_KEYS) <= row.keys() and row["fid_n"] == 200
        assert math.isfinite(row["fid"]) and row["fid"] > 0
        assert 1 <= row["classes"] <= 10 and row["kl"] >= 0 and 1 <= row["score"] <= 10
        assert abs(sum(row["hist"]) - 1) < 1e-3 and row["eval_s"] > 0
    assert printed.getvalue().count("quality at step") == 3
    assert "(N=200)" in printed.getvalue()


def test_evaluation_leaves_training_untouched(tiny_config, tmp_path):
    """Own latents, eval mode, no grad: the weights are those of a run without evaluations."""
    runs = []
    for name, every in (("with", 2), ("without", 0)):
        trainer = Trainer(tiny_config(out=str(tmp_path / name), steps=8, eval_every=every))
        trainer.run()
        runs.append(trainer)
    assert len(runs[0].quality) == 4 and not runs[1].quality
    for a, b in zip(runs[0].state_dict()["gan"]["generator"].values(), runs[1].state_dict()["gan"]["generator"].values()):
        assert torch.equal(a, b)  # BatchNorm running statistics included


def scripted_figures(monkeypatch, hists: list[list[float]]) -> None:
    """`evaluate` returns these class histograms in turn (the rest of the figures plain)."""
    queue = list(hists)

    def fake(images, device="cpu", neighbours=False, bf16=False, labels=None, dataset="mnist"):
        hist = queue.pop(0)
        kl = sum(h * math.log(h / 0.1) for h in hist if h > 0)
        return {"fid": 10.0, "fid_n": len(images), "classes": sum(h >= 0.01 for h in hist), "kl": kl,
                "confidence": 0.9, "score": 8.0, "hist": hist}

    monkeypatch.setattr(metrics, "evaluate", fake)


HEALTHY = [0.1] * 10
NO_THREE = [0.111] * 3 + [0.0] + [0.111] * 6
SKEWED = [0.37] + [0.07] * 9  # every digit present, KL 0.25


def test_mode_collapse_warning_after_consecutive_evaluations(tiny_config, monkeypatch):
    scripted_figures(monkeypatch, [HEALTHY, NO_THREE, NO_THREE, NO_THREE, HEALTHY, SKEWED, SKEWED])
    events: list = []
    trainer = Trainer(tiny_config(steps=7, eval_every=1), events.append)
    trainer.run()
    rows = [e.row for e in events if isinstance(e, ev.Quality)]
    assert [r["collapse"] for r in rows] == [False, False, True, True, False, False, True]
    warnings = [e.text for e in events if isinstance(e, ev.Notice) and e.level == "warning"]
    assert len(warnings) == 2  # once as each collapse begins, not at every evaluation
    assert "digits 3 under 1%" in warnings[0] and f"{COLLAPSE_EVALS} evaluations in a row" in warnings[0]
    assert "KL 0.25" in warnings[1]


def test_no_warning_while_the_samples_are_still_forming(tiny_config, monkeypatch):
    """Before the first healthy evaluation (and within the first epochs) a skewed histogram is not collapse."""
    scripted_figures(monkeypatch, [SKEWED] * 4)
    events: list = []
    Trainer(tiny_config(steps=4, eval_every=1), events.append).run()
    assert [e.row["collapse"] for e in events if isinstance(e, ev.Quality)] == [False] * 4
    assert not [e for e in events if isinstance(e, ev.Notice) and e.level == "warning"]


def test_collapse_state_and_curve_survive_a_resume(tiny_config, tmp_path, monkeypatch):
    scripted_figures(monkeypatch, [HEALTHY, NO_THREE, NO_THREE, HEALTHY])
    Trainer(tiny_config(steps=2, eval_every=1)).run()
    state = load_checkpoint(tmp_path / "run")
    assert [r["step"] for r in state["quality"]] == [1, 2] and state["monitor"]["collapsed"] == 1
    events: list = []
    Trainer(tiny_config(steps=3, eval_every=1), events.append, resume_state=state).run()
    started = next(e for e in events if isinstance(e, ev.Started))
    assert [r["step"] for r in started.quality] == [1, 2]
    assert [e.row["collapse"] for e in events if isinstance(e, ev.Quality)] == [True]  # the second in a row


def test_a_damaged_classifier_turns_evaluation_off(tiny_config, monkeypatch):
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise EvaluatorError("classifier.pt: SHA-256 0000... does not match the recorded cf8f...")

    monkeypatch.setattr(metrics, "evaluate", broken)
    events: list = []
    finished = Trainer(tiny_config(steps=6, eval_every=2), events.append).run()
    assert finished.reason == "done" and finished.step == 6 and len(calls) == 1
    errors = [e.text for e in events if isinstance(e, ev.Notice) and e.level == "error"]
    assert errors == ["quality evaluation turned off: classifier.pt: SHA-256 0000... does not match the recorded cf8f..."]


@pytest.mark.parametrize("flag", [["--eval-every", "-1"], ["--eval-n", "10"]])
def test_bad_evaluation_flags_are_one_line_errors(flag, tmp_path, capsys):
    err = refused(capsys, "--no-ui", "--out", str(tmp_path), *flag)
    assert len(err.strip().splitlines()) == 1 and flag[0] in err


async def test_quality_pane_shows_live_evaluations(tiny_config):
    app = make_app(tiny_config(steps=1_000_000, save_every=1_000_000, sample_every=1_000_000, eval_every=2))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(app.quality_pane.fids) >= 2)
        header = str(app.quality_pane.header.render())
        assert "FID" in header and "N=100" in header
        assert app.quality_pane.bars.hist is not None and len(app.quality_pane.bars.hist) == 10
        assert "digits" in str(app.quality_pane.verdict.render()) or "COLLAPSE" in str(app.quality_pane.verdict.render())
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running)  # the save may wait for an evaluation in flight
    assert app.return_code == 0


async def test_a_conditional_runs_quality_says_how_many_samples_are_the_digit_asked_for(tiny_config):
    app = make_app(tiny_config(steps=1_000_000, save_every=1_000_000, sample_every=1_000_000, eval_every=2,
                               conditional=True))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: len(app.quality_pane.fids) >= 1)
        verdict = str(app.quality_pane.verdict.render())
        assert "as asked" in verdict and "%" in verdict and "conf" not in verdict, verdict
        await pilot.press("q")
    line = format_quality({"step": 2, "fid": 50.0, "fid_n": 100, "classes": 10, "kl": 0.01, "confidence": 0.9,
                           "score": 8.0, "eval_s": 0.5, "cond_acc": 0.975})
    assert "97.5% drawn as asked" in line


def test_default_interval_follows_the_device(tiny_config):
    assert Trainer(tiny_config()).eval_every == 500  # the CPU; 2000 on CUDA (default_eval_every)
    assert Trainer(tiny_config(eval_every=7)).eval_every == 7


def test_on_collapse_pause_pauses_the_run(tiny_config, monkeypatch):
    """--on-collapse pause: the warning pauses training, so the user can change something first."""
    scripted_figures(monkeypatch, [HEALTHY, NO_THREE, NO_THREE] + [HEALTHY] * 9)
    events: list = []
    trainer = Trainer(tiny_config(steps=12, eval_every=1, on_collapse="pause"), events.append)
    thread = threading.Thread(target=trainer.run)
    thread.start()
    deadline = time.monotonic() + 60
    while not any(isinstance(e, ev.Paused) and e.paused for e in events) and time.monotonic() < deadline:
        time.sleep(0.05)
    paused = [e for e in events if isinstance(e, ev.Paused)]
    assert paused and paused[0].step == 3  # at the evaluation that fired the warning
    assert any("pausing (--on-collapse pause)" in e.text for e in events if isinstance(e, ev.Notice))
    trainer.controls.stop()
    thread.join(30)
