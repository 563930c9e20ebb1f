"""A penalty is one registration (gantui/penalties.py): registered here, in this file alone, it is
a flag, a live setting, a curve, a key of config.json and of each checkpoint's config, and it trains."""
from __future__ import annotations

import json

import pytest
import torch

from gantui.config import ConfigError, check_live, live_settings
from gantui.penalties import PENALTIES, Penalty, register

calls: list[int] = []


def drift(batch) -> torch.Tensor:
    """The epsilon-drift penalty of Karras et al. 2018 (progressive GANs): D's scores on real
    images kept near 0, so a critic's scores do not drift away."""
    calls.append(len(batch.real))
    return batch.D(batch.real).float().pow(2).mean()


DRIFT = Penalty("drift", "drift", "drift weight", "epsilon-drift penalty weight on D(x)^2", drift, every=2)


@pytest.fixture
def registered():
    register(DRIFT)
    calls.clear()
    yield DRIFT
    del PENALTIES[DRIFT.key]


def test_a_penalty_registered_in_a_test_file_is_a_flag_a_live_setting_a_curve_and_a_saved_setting_and_trains(
        registered, tmp_path):
    from gantui.cli.resolve import build_config
    from gantui.cli.train import train_parser
    from gantui.engine.checkpoint import load_checkpoint
    from gantui.engine.trainer import Trainer

    assert "--drift X" in train_parser().format_help()
    out = tmp_path / "run"
    args = train_parser().parse_args(["--loss", "wgan-gp", "--drift", "0.001", "--steps", "8", "--batch-size", "16",
                                      "--log-every", "2", "--save-every", "100", "--eval-every", "0", "--device", "cpu",
                                      "--out", str(out)])
    config, _ = build_config(args)
    assert config.penalties["drift"] == 0.001 and config.penalties["gp"] == 10.0  # beside the loss's own
    assert live_settings()["drift"] == "drift weight" and check_live("drift", 0.5) == 0.5
    with pytest.raises(ConfigError, match="--drift must be from 0"):
        check_live("drift", -1)

    trainer = Trainer(config)
    trainer.controls.set({"drift": 0.002})  # applied at the first step boundary, as from the dashboard's form
    finished = trainer.run()
    assert finished.reason == "done", finished.error
    assert calls == [16] * 4  # every second D step of 8, on the step's real batch

    losses = json.loads((out / "config.json").read_text())["schema"][0]["lines"]
    assert ["drift", "drift", ".3f"] in losses and ["gp", "penalty", ".3f"] in losses  # a curve in the Losses pane
    assert json.loads((out / "config.json").read_text())["drift"] == 0.001  # the run's setting as it started
    announced = json.loads((out / "config.json").read_text())  # and its live settings, for any watcher
    assert announced["settings"]["drift"] == "drift weight" and announced["locked"] == ["r1"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    values = [row["drift"] for row in rows if "drift" in row]
    assert len(values) == 4 and all(v > 0 for v in values)
    assert [row["values"] for row in rows if row.get("event") == "set"] == [{"drift": 0.002}]
    assert load_checkpoint(out)["config"]["drift"] == 0.002  # as it stood: a resume continues with it


def test_a_penalty_off_at_the_start_computes_nothing_and_cannot_be_turned_on_live(registered, tiny_config):
    from gantui.engine.trainer import Trainer

    trainer = Trainer(tiny_config(steps=4))
    trainer.controls.set({"drift": 0.5})
    notices = []
    trainer.publisher.hub.subscribe(lambda event: notices.append(getattr(event, "text", "")))
    assert trainer.run().reason == "done"
    assert calls == [] and "drift" not in trainer.history[-1]
    assert any("--drift was off when this run started" in text for text in notices)


def test_a_key_taken_is_refused():
    with pytest.raises(ValueError, match="'r1' is registered already"):
        register(Penalty("r1", "R1", "R1 weight", "another R1", lambda b: b.real.sum()))


def test_a_gradient_penalty_weighted_0_resumes_and_one_turned_on_where_d_has_batch_norm_is_refused(tmp_path):
    """On a 32x32 folder (a DCGAN D with batch norm unless a gradient penalty is on at the start):
    wgan-gp's penalty set to 0 stays on (D built without batch norm) and the run resumes; a
    penalty off at the start and turned on at a resume would change D's layout: one line, exit 2,
    before anything trains. Fresh processes: the checkpoints are the ones a user's are."""
    from support import gantui, write_images

    write_images(tmp_path / "images", 64, size=(40, 40))
    flags = ("--no-ui", "--data", str(tmp_path / "images"), "--image-size", "32", "--batch-size", "8", "--steps", "2",
             "--log-every", "1", "--eval-every", "0", "--device", "cpu")
    made = gantui(*flags, "--loss", "wgan-gp", "--out", str(tmp_path / "gp"))
    assert made.returncode == 0, made.stderr
    again = gantui(*flags, "--resume", str(tmp_path / "gp"), "--gp", "0", "--steps", "4")
    assert again.returncode == 0, again.stderr
    rows = [json.loads(line) for line in (tmp_path / "gp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["gp"] for r in rows if "loss_d" in r and r["step"] > 2] == [0.0, 0.0]  # on, at 0
    plain = gantui(*flags, "--out", str(tmp_path / "plain"))
    assert plain.returncode == 0, plain.stderr
    refused = gantui(*flags, "--resume", str(tmp_path / "plain"), "--gp", "10", "--steps", "4")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "gantui: error: --gp: this run's D was built with batch norm (gp was off at its start), and gp needs one "
        "without: start a new run with its settings, gantui --config RUN --gp W"]
