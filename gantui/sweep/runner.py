"""A sweep's workers in one process: `jobs` threads, each asking the study for a trial, running
it (trial.py) and telling the study how it ended, until the study holds `trials` trials. A
resumed sweep first takes back the trials its dead process left running: each resumes from its
checkpoint (or starts again with the same parameters). SIGINT or SIGTERM saves and stops every
running trial, left for `gantui sweep --resume`. A line a trial event on stdout."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from gantui.run.rundir import RunDir
from gantui.sweep.space import Objective, Param
from gantui.sweep.study import Spec, SweepDir, distributions
from gantui.sweep.trial import STOP_WAIT, Outcome, TrialRun, same_host, settings, trial_name, worker_id

COUNTED = ("COMPLETE", "PRUNED", "FAIL", "RUNNING")  # the trials that count towards --trials


def retried(call: Any, tries: int = 5) -> Any:
    """A storage call again after a passing error (SQLite's "database is locked", a network blip)."""
    for attempt in range(tries):
        try:
            return call()
        except Exception:
            if attempt == tries - 1:
                raise
            time.sleep(0.5 * 2 ** attempt)


def visible_gpus() -> list[str]:
    """The GPUs a trial may be given, without importing torch: CUDA_VISIBLE_DEVICES, else nvidia-smi's."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [d for d in given.split(",") if d.strip() and not d.strip().startswith("-")]
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(listed.splitlines()) if line.startswith("GPU ")]


class Sweep:
    def __init__(self, sweep: SweepDir, spec: Spec, study: Any, params: list[Param], objective: Objective,
                 jobs: int, gpus: list[str], say=print) -> None:
        self.sweep, self.spec, self.study, self.params, self.objective = sweep, spec, study, params, objective
        self.jobs, self.gpus, self.say = jobs, gpus, say
        self.lock = threading.Lock()  # the study's count and the running trials, between this process's workers
        self.stopping = threading.Event()
        self.running: dict[int, TrialRun] = {}
        self.workers: list[threading.Thread] = []

    def start(self, adopt: bool) -> None:
        """The workers started (a resumed sweep's dead trials queued again first)."""
        if adopt:
            self._requeue_orphans()
        self.workers = [threading.Thread(target=self._work, args=(slot,), name=f"gantui-sweep-{slot}", daemon=True)
                        for slot in range(self.jobs)]
        for worker in self.workers:
            worker.start()

    def wait(self) -> int:
        """Until every worker is done (SIGINT and SIGTERM stop the sweep meanwhile); the summary."""
        handlers = {sig: signal.signal(sig, lambda *_: self.stop()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not self.finished():
                time.sleep(0.2)  # the main thread free for the signals
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        try:
            self.say(self.progress(final=True))
            complete = any(t.state.name == "COMPLETE" for t in self.study.get_trials(deepcopy=False))
        except Exception as err:
            self.say(f"the study cannot be read: {type(err).__name__}: {err}")
            return 1
        return 0 if complete or self.stopping.is_set() else 1  # every trial failed or pruned: say so

    def run(self, adopt: bool) -> int:
        self.start(adopt)
        return self.wait()

    def finished(self) -> bool:
        return not any(w.is_alive() for w in self.workers)

    def stop(self) -> None:
        """Every running trial saved and stopped; no trial started after."""
        if not self.stopping.is_set() and not self.finished():
            self.say("stopping: every running trial saves, then stops (gantui sweep --resume continues)")
        self.stopping.set()
        with self.lock:
            for trial in list(self.running.values()):
                trial.stop()

    def _requeue_orphans(self) -> None:
        """The trials this host's dead sweep processes left running (`--resume` is refused while one
        lives), queued again with their parameters and run directory (Optuna's way:
        `enqueue_trial`), the old records failed."""
        from optuna.trial import TrialState

        for old in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if same_host(old.user_attrs.get("worker")):
                self.study.enqueue_trial(old.params, user_attrs={"dir": old.user_attrs["dir"], "resumes": old.number})
                self.study.tell(old.number, state=TrialState.FAIL, skip_if_finished=True)

    def _count(self) -> int:
        """The trials towards --trials: every one started or ended, less those queued again as another."""
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        again = {t.user_attrs.get("resumes") for t in trials}
        return sum(t.state != TrialState.WAITING and not (t.state == TrialState.FAIL and t.number in again)
                   for t in trials)

    def _next(self) -> Any | None:
        """A trial to run: a queued one first (a resumed trial: it counted already), else a new one
        while fewer than --trials are; None when the sweep is stopping or has enough."""
        from optuna.trial import TrialState

        with self.lock:
            if self.stopping.is_set():
                return None
            queued = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            if not queued and self._count() >= self.spec.trials:
                return None
            trial = self.study.ask(distributions(self.params))
            trial.set_user_attr("worker", worker_id())
            given = trial.user_attrs.get("dir")
            if given is None or Path(given).parent != self.sweep.trials:  # new, or another host's: ours, afresh
                trial.set_user_attr("dir", str(self.sweep.trials / trial_name(trial.number, trial.params)))
            return trial

    def _env(self, slot: int) -> dict[str, str]:
        env = dict(os.environ)
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        elif "OMP_NUM_THREADS" not in env:  # the cores split between the trials at once
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.jobs))
        return env

    def _work(self, slot: int) -> None:
        while True:
            try:
                trial = self._next()
            except Exception as err:  # the storage gone: this worker ends, the others' trials go on
                self.say(f"worker {slot} stops: the study cannot be read ({type(err).__name__}: {err})")
                return
            if trial is None:
                return
            try:
                self._run(trial, slot)
            except Exception as err:  # the storage or the disk: this trial fails, the sweep goes on
                self.say(f"trial {trial.number} failed: {type(err).__name__}: {err}")
                try:
                    from optuna.trial import TrialState

                    self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                except Exception:
                    pass

    def _run(self, trial: Any, slot: int) -> None:
        """Start (or take back from a dead process) and watch one trial, then tell the study."""
        run = RunDir(trial.user_attrs["dir"])
        shown = " ".join(settings(trial.params))
        process = TrialRun.fresh(trial, run, self.objective, list(self.spec.flags), self.params, self._env(slot))
        said = f"trial {trial.number} started ({shown}): {run.path}"
        if "resumes" in trial.user_attrs and run.path.exists():
            deadline = time.monotonic() + STOP_WAIT
            while run.is_locked():  # its process saving, after its sweep died (common.PARENT_ENV)
                if self.stopping.is_set() or time.monotonic() > deadline:
                    raise RuntimeError(f"{run.path} is still held by another process")
                time.sleep(0.2)
            if run.read_status().get("state") == "done":
                self._tell(trial, process.outcome(0))
                return
            if run.last.exists():
                process = TrialRun.resumed(trial, run, self.objective, self._env(slot))
                said = f"trial {trial.number} resumes trial {trial.user_attrs['resumes']} from its checkpoint: {run.path}"
            else:
                shutil.rmtree(run.path, ignore_errors=True)  # nothing saved yet: started again, as it was
                said = f"trial {trial.number} starts trial {trial.user_attrs['resumes']} again ({shown}): {run.path}"
        with self.lock:
            if self.stopping.is_set():
                return  # asked for, never started: taken back by --resume
            process.start()
            self.running[trial.number] = process
        self.say(said)
        try:
            outcome = process.watch()
        finally:
            with self.lock:
                self.running.pop(trial.number, None)
            process.end()  # whatever went wrong watching it, it does not train on for nobody
        self._tell(trial, outcome)

    def _tell(self, trial: Any, outcome: Outcome) -> None:
        """The study told how the trial ended (a storage's passing error retried), and a line said."""
        from optuna.trial import TrialState

        key = self.objective.key
        if outcome.state == "interrupted":
            self.say(f"trial {trial.number} saved at step {outcome.step}, to resume")
            return  # left running in the study: `--resume` takes it back
        if outcome.state == "complete":
            retried(lambda: self.study.tell(trial, outcome.value, skip_if_finished=True))
            best = self._best()
            self.say(f"trial {trial.number} done: {key} {outcome.value:.4g}"
                     + (f" (best: trial {best.number}, {best.value:.4g})" if best is not None else ""))
        elif outcome.state == "pruned":
            retried(lambda: self.study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True))
            self.say(f"trial {trial.number} pruned {outcome.message}, saved at step {outcome.step}")
        else:
            retried(lambda: trial.set_user_attr("error", outcome.message))
            retried(lambda: self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True))
            self.say(f"trial {trial.number} failed: {outcome.message}")

    def _best(self) -> Any:
        try:
            return self.study.best_trial
        except ValueError:
            return None

    def progress(self, final: bool = False) -> str:
        """The study's trials so far: how many ended how, and the best."""
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        again = {t.user_attrs.get("resumes") for t in trials}
        count = {s: sum(t.state == TrialState[s] and t.number not in again for t in trials) for s in COUNTED}
        line = (f"{self._count()} trials of {self.spec.trials}: {count['COMPLETE']} complete, {count['PRUNED']} pruned, "
                f"{count['FAIL']} failed, {count['RUNNING']} {'running or saved to resume' if final else 'running'}")
        best = self._best()
        if best is not None:
            line += f"; best: trial {best.number}, {self.objective.key} {best.value:.4g}"
            line += f" ({best.user_attrs.get('dir')})" if final else ""
        return line
