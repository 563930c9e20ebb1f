"""`gantui sweep` on Optuna: trials that are ordinary runs, read back through Optuna's own API from
the study's storage; a second worker joining; a sweep killed with SIGKILL and resumed to its trial
count; `gantui stop` on a sweep; a pruned trial saved; bad input refused before any trial starts."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from gantui.run.rundir import RunDir
from gantui.run.compare import quality_rows
from support import FAST, NEVER, Peer, Terminal, gantui, gantui_traceback, popen, refused, wait_for_step, wait_until, write_run

SHORT = [*FAST, "--steps", "6", "--eval-every", "3"]


def sweep(*args: str) -> subprocess.Popen:
    return popen([sys.executable, "-m", "gantui", "sweep", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 text=True)


def study_of(out: Path) -> optuna.Study:
    """The sweep's study, found as any Optuna tool finds it: the storage and name in sweep.json."""
    named = json.loads((out / "sweep.json").read_text())
    return optuna.load_study(study_name=named["study"], storage=named["storage"])


def finished(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    assert not gantui_traceback(err), err
    return out


def trial_dirs(study: optuna.Study) -> list[RunDir]:
    return [RunDir(t.user_attrs["dir"]) for t in study.trials]


def test_four_trials_two_at_once_read_back_through_optuna(tmp_path):
    out = tmp_path / "sweep"
    said = finished(sweep("--out", str(out), "--trials", "4", "--jobs", "2", "--space", "loss=ns,hinge,lsgan",
                          "--space", "lr=1e-5..1e-3:log", "--objective", "fid", "--pruner", "none", *SHORT))
    study = study_of(out)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    for trial, run in zip(study.trials, trial_dirs(study)):
        assert run.path.parent == out / "trials" and run.path.name.startswith(f"{trial.number:03d}-")
        config = run.read_config()  # an ordinary run, with the trial's settings and the sweep's flags
        assert (config["loss"], config["lr_d"], config["steps"]) == (trial.params["loss"], trial.params["lr"], 6)
        assert 1e-5 <= trial.params["lr"] <= 1e-3
        fids = {r["step"]: r["fid"] for r in quality_rows(run)}
        assert trial.intermediate_values == fids and set(fids) == {3, 6}
        assert trial.value == min(fids.values())
        assert run.read_status()["state"] == "done"
    assert study.best_trial.value == min(t.value for t in study.trials)
    # two at once: the first two trials ran side by side, and never three
    spans = [(t.datetime_start, t.datetime_complete) for t in study.trials]
    overlap = max(sum(s <= start < e for s, e in spans) for start, _ in spans)
    assert overlap == 2
    assert said.count(" started (") == 4 and said.count(" done: fid ") == 4
    assert f"best: trial {study.best_trial.number}" in said.splitlines()[-1]


def test_a_second_worker_joins_the_same_study(tmp_path):
    out = tmp_path / "sweep"
    first = sweep("--out", str(out), "--trials", "4", "--jobs", "1", "--space", "loss=ns,hinge", "--pruner", "none",
                  *SHORT)
    wait_until(lambda: (out / "trials").is_dir() and any((out / "trials").iterdir()), 120, "the first trial")
    second = sweep("--join", str(out), "--jobs", "1")
    finished(first), finished(second)
    study = study_of(out)
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers) == 2  # each process ran trials of the one study
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == len(study.trials) >= 4


def test_a_sweep_killed_with_sigkill_resumes_to_its_trial_count(tmp_path):
    """Both trials of the sweep running when it is killed (its count reached): each saves as its
    sweep dies, and `--resume` runs both on from their checkpoints."""
    out = tmp_path / "sweep"
    args = ["--trials", "2", "--jobs", "2", "--space", "seed=1,2", "--sampler", "grid", "--pruner", "none", *FAST,
            "--steps", "100", "--eval-every", "50", "--save-every", "10"]
    killed = sweep("--out", str(out), *args)
    trials = out / "trials"
    runs = lambda: sorted(trials.iterdir()) if trials.is_dir() else []  # noqa: E731
    wait_until(lambda: len(runs()) == 2 and all(RunDir(p).last.exists() for p in runs()), 120, "both checkpoints")
    for path in runs():
        wait_for_step(path, 10)
        peer = Peer(path)  # paused, so that it cannot end before the kill lands, however fast the machine
        peer.cmd("pause")
        peer.until(lambda m: m.get("type") == "paused")
        peer.close()
    killed.send_signal(signal.SIGKILL)
    killed.wait(60)
    wait_until(lambda: not any(RunDir(p).is_locked() for p in runs()), 120, "the orphaned trials to save and exit")
    for path in runs():
        assert RunDir(path).read_status()["state"] == "stopped"  # saved, not killed mid-write
        assert 10 <= RunDir(path).read_status()["step"] < 100
    said = finished(sweep("--resume", str(out), "--jobs", "2"))
    assert said.count("from its checkpoint") == 2
    study = study_of(out)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.params["seed"] for t in done) == [1, 2]  # its count, each setting once
    for path in runs():
        rows = RunDir(path).read_metrics()
        assert max(r["step"] for r in rows if "event" not in r) == 100 and RunDir(path).read_status()["state"] == "done"
        resumed = next(t for t in done if t.user_attrs["dir"] == str(path))
        assert resumed.value == min(r["fid"] for r in quality_rows(RunDir(path)))


def test_gantui_stop_saves_every_trial_of_a_sweep(tmp_path):
    out = tmp_path / "sweep"
    running = sweep("--out", str(out), "--trials", "4", "--jobs", "2", "--space", "seed=1,2", "--sampler", "grid",
                    *FAST, "--steps", NEVER, "--eval-every", "0", "--objective", "loss_g:min")
    runs = lambda: [RunDir(p) for p in (out / "trials").iterdir()] if (out / "trials").is_dir() else []  # noqa: E731
    wait_until(lambda: len(runs()) == 2 and all(r.read_status().get("state") == "training" for r in runs()), 120,
               "two trials training")
    stopped = gantui("stop", str(out))
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped the sweep" in stopped.stdout
    said = finished(running, 60)
    assert said.count(", to resume") == 2 and said.count(" started (") == 2
    for run in runs():
        assert run.read_status()["state"] == "stopped" and run.last.exists() and not run.is_locked()
    study = study_of(out)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING] * 2  # for --resume
    again = gantui("stop", str(out))
    assert again.returncode == 2 and "not running" in again.stderr


def test_a_hopeless_trial_is_pruned_and_saved(tmp_path):
    """The pruner compares each evaluation with the trials before it: against one that scored 0 at
    every step, the first FID prunes the trial; it is sent SIGTERM, and saves."""
    from gantui.sweep.space import check_flags, parse_objective, parse_space
    from gantui.sweep.study import Spec, SweepDir, default_storage, distributions, open_study

    out = SweepDir(tmp_path / "sweep")
    out.path.mkdir()
    flags = [*FAST, "--steps", NEVER, "--eval-every", "3"]
    spec = Spec(storage=default_storage(out), study="s", trials=2, space=("seed=1,2",), objective="fid",
                sampler="random", pruner="median", flags=tuple(flags))
    params = parse_space(list(spec.space), flags)
    study = open_study(spec, params, parse_objective("fid", check_flags(flags, "test")), create=True)
    out.write(spec.storage, spec.study)
    study.add_trial(optuna.trial.create_trial(params={"seed": 1}, distributions=distributions(params), value=0.0,
                                              intermediate_values={step: 0.0 for step in range(0, 1000)}))
    said = finished(sweep("--join", str(out.path)))
    pruned = study_of(out.path).trials[1]
    assert pruned.state == optuna.trial.TrialState.PRUNED and list(pruned.intermediate_values)[0] == 3
    run = RunDir(pruned.user_attrs["dir"])
    assert run.read_status()["state"] == "stopped" and run.last.exists()
    assert "trial 1 pruned at step 3" in said


@pytest.mark.parametrize("argv, says", [
    (["--space", "colour=red"], "no setting named 'colour'"),
    (["--space", "loss=ns,bogus"], "--loss"),
    (["--space", "lr=1e-3..1e-5"], "an empty range"),
    (["--space", "lr=0..1e-3:log"], "a log scale starts above 0"),
    (["--space", "lr=1e-4..x"], "'x' is not a number"),
    (["--space", "batch_size=0,8"], "batch"),
    (["--space", "loss"], "NAME=A,B,C"),
    (["--space", "loss=ns", "--objective", "coverage"], "no trial logs 'coverage'"),
    (["--space", "loss=ns", "--eval-every", "0"], "not evaluated (--eval-every 0)"),
    (["--space", "loss=ns", "--objective", "loss_d"], "loss_d:min or loss_d:max"),
    (["--space", "lr=1e-5..1e-3", "--sampler", "grid"], "lr is a range"),
    (["--space", "loss=ns", "--jobs", "0"], "--jobs 0"),
    (["--space", "loss=ns", "--nproc", "2"], "--nproc"),
    (["--space", "loss=ns", "--bogus"], "unrecognized arguments: --bogus"),
    (["--space", "loss=ns", "--npro", "2"], "--nproc: the sweep says"),  # abbreviated, as argparse allows
    (["--space", "loss=ns", "--config", "somewhere"], "--config: the sweep says"),
])
def test_bad_input_is_one_line_before_any_trial(tmp_path, capsys, argv, says):
    err = refused(capsys, "sweep", "--out", str(tmp_path / "sweep"), *argv)
    assert says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "sweep").exists()


def test_a_sweep_is_started_once_and_resumed_only_when_stopped(tmp_path, capsys):
    from gantui.sweep.study import SweepDir

    out = SweepDir(tmp_path / "sweep")
    out.write("sqlite:///" + str(tmp_path / "sweep" / "study.db"), "s")
    assert "holds a sweep already" in refused(capsys, "sweep", "--out", str(out.path), "--space", "loss=ns")
    held = out.hold()
    try:
        assert f"is running (pid {os.getpid()})" in refused(capsys, "sweep", "--resume", str(out.path))
    finally:
        os.close(held)
    assert "not a sweep" in refused(capsys, "sweep", "--resume", str(tmp_path))
    assert "--study NAME" in refused(capsys, "sweep", "--join", "sqlite:///x.db")
    assert "keeps what it started with" in refused(capsys, "sweep", "--resume", str(out.path), "--trials", "9")
    taken = f"sqlite:///{tmp_path / 'taken.db'}"
    optuna.create_study(storage=taken, study_name="gan")
    err = refused(capsys, "sweep", "--out", str(tmp_path / "new"), "--storage", taken, "--study", "gan", "--space",
                  "loss=ns")
    assert "holds a study of that name already" in err


def test_a_trial_that_has_ended_is_not_pruned(tmp_path):
    """Its last evaluation, read once its process has exited, is reported, not judged."""
    from gantui.sweep.space import Objective
    from gantui.sweep.trial import TrialRun

    class Trial:
        reported: list = []

        def report(self, value, step):
            self.reported.append(step)

        def should_prune(self):
            return True  # the pruner would stop anything

    class Exited:
        def wait(self, timeout=None):
            return 0

        def poll(self):
            return 0

    run = write_run(tmp_path / "run", {"loss": "ns"})
    trial = TrialRun(Trial(), run, Objective("fid", "minimize", last=False, quality=True), [], {})
    trial.process = Exited()
    outcome = trial.watch()
    assert outcome.state == "complete" and outcome.value == min(r["fid"] for r in quality_rows(run))
    assert Trial.reported == [10, 20, 30, 40]


def test_in_a_terminal_the_sweep_shows_its_trials_and_is_left_running_then_stopped(tmp_path):
    """The comparison view of its trials; q asks (escape: back), l leaves it running without the view;
    `gantui stop SWEEP` then saves every trial and ends it."""
    out = tmp_path / "sweep"
    view = Terminal("sweep", "--out", str(out), "--trials", "2", "--jobs", "2", "--space", "seed=1,2", "--sampler",
                    "grid", *FAST, "--steps", NEVER, "--eval-every", "0", "--objective", "loss_g:min")
    try:
        view.wait_for(b"Pause/Resume")  # the view's footer
        runs = lambda: [RunDir(p) for p in (out / "trials").iterdir()] if (out / "trials").is_dir() else []  # noqa: E731
        wait_until(lambda: len(runs()) == 2 and all(r.read_status().get("state") == "training" for r in runs()), 120,
                   "two trials training")
        view.wait_for(b"2 running")  # the study's progress, in the view
        since = view.press(b"q")
        view.wait_for(b"leave it running", since=since)
        view.press(b"\x1b")
        since = view.press(b"q")
        view.wait_for(b"leave it running", since=since)
        since = view.press(b"l")
        view.wait_for(b"trial 1 started", since=since)  # the lines said while the view was up, then the sweep's own
        assert all(r.read_status().get("state") == "training" for r in runs())  # left running
        stopped = gantui("stop", str(out))
        assert stopped.returncode == 0, stopped.stderr
        assert view.exit_code(120) == 0
        for run in runs():
            assert run.read_status()["state"] == "stopped" and run.last.exists()
        assert not gantui_traceback(view.screen.decode(errors="replace"))
    finally:
        if view.proc.poll() is None:
            view.proc.kill()


def test_a_worker_elsewhere_joins_from_the_storage_url_alone(tmp_path):
    """Another machine's worker: the study's storage (a journal file on a shared disk here), its name,
    and a directory of its own for the trials it runs; the study holds everything else."""
    out, elsewhere = tmp_path / "sweep", tmp_path / "elsewhere"
    url = f"journal:{tmp_path / 'shared' / 'journal.log'}"
    (tmp_path / "shared").mkdir()
    first = sweep("--out", str(out), "--storage", url, "--study", "gan", "--trials", "4", "--space", "seed=1,2,3,4",
                  "--sampler", "grid", "--pruner", "none", *SHORT)
    wait_until(lambda: (out / "trials").is_dir() and any((out / "trials").iterdir()), 120, "the first trial")
    second = sweep("--join", url, "--study", "gan", "--out", str(elsewhere))
    finished(first), finished(second)
    study = optuna.load_study(study_name="gan", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "shared" / "journal.log"))))
    assert json.loads((elsewhere / "sweep.json").read_text()) == {"storage": url, "study": "gan"}
    dirs = {Path(t.user_attrs["dir"]).parent for t in study.trials}
    assert dirs == {out / "trials", elsewhere / "trials"}  # each worker's trials where it runs them
    assert {t.params["seed"] for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE} == {1, 2, 3, 4}


def test_a_trial_that_fails_is_marked_with_its_error_and_the_sweep_goes_on(tmp_path):
    """A batch larger than the data passes every flag's own rule, and fails when the trial starts."""
    out = tmp_path / "sweep"
    said = finished(sweep("--out", str(out), "--trials", "2", "--space", "batch_size=16,100000", "--sampler", "grid",
                          "--pruner", "none", *SHORT, "--no-ui"))
    trials = {t.params["batch_size"]: t for t in study_of(out).trials}
    assert trials[16].state == optuna.trial.TrialState.COMPLETE
    failed = trials[100000]
    assert failed.state == optuna.trial.TrialState.FAIL and "batch size 100000" in failed.user_attrs["error"]
    assert f"trial {failed.number} failed: " in said and "1 complete" in said.splitlines()[-1]


def test_each_trial_at_once_gets_a_gpu_of_its_own(monkeypatch):
    """Round robin over the visible GPUs (none here: the environment is what is checked); on the CPU,
    the cores split between the trials at once."""
    from gantui.sweep.runner import Sweep, visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert visible_gpus() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus() == []
    on_gpus = Sweep(None, None, None, [], None, jobs=3, gpus=["2", "5"])
    assert [on_gpus._env(slot)["CUDA_VISIBLE_DEVICES"] for slot in range(3)] == ["2", "5", "2"]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert Sweep(None, None, None, [], None, jobs=2, gpus=[])._env(0)["OMP_NUM_THREADS"] == "4"
