"""The monitor: quality evaluations of fixed latents, and the mode-collapse warning."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from gantui.common import rare_digits

EVAL_BATCH = 500  # latents per generator pass in an evaluation
QUALITY_KEYS = ("fid", "fid_n", "classes", "kl", "confidence", "score")
# A mode-collapse warning: a digit under 1% of the samples, or the class histogram this far (KL)
# from MNIST's (one digit missing altogether is about 0.1), at this many evaluations in a row. It is
# armed by the first healthy evaluation, or after this many epochs: early samples are still blobs,
# and a classifier sorts blobs unevenly (36% "3" and KL 0.33 at step 1000 of a healthy run).
COLLAPSE_KL = 0.1
COLLAPSE_EVALS = 2
COLLAPSE_ARMED_EPOCHS = 2


class EvaluationOff(Exception):
    """The evaluator cannot run (its files are damaged): evaluation stops, training goes on."""


class Monitor:
    def __init__(self, noise: torch.Tensor, labels: torch.Tensor | None, device: torch.device, bf16: bool,
                 dataset: str = "mnist") -> None:
        self.noise, self.labels, self.device, self.bf16, self.dataset = noise, labels, device, bf16, dataset
        self.collapsed = 0  # evaluations in a row that looked like mode collapse
        self.armed = False

    def evaluate(self, generate: Callable[..., torch.Tensor], step: int, epoch: int) -> dict[str, Any]:
        """A quality row for metrics.jsonl (`collapse` set when the warning fires); EvaluationOff
        when the evaluator cannot run."""
        from gantui.evaluation.classifier import EvaluatorError
        from gantui.evaluation.metrics import evaluate  # late: the classifier loads on first use

        start = time.perf_counter()
        labels = self.labels.split(EVAL_BATCH) if self.labels is not None else [None] * len(self.noise.split(EVAL_BATCH))
        images = torch.cat([generate(z, y).float() for z, y in zip(self.noise.split(EVAL_BATCH), labels)])
        try:
            # Building the classifier (at the first evaluation) draws from torch's global RNG:
            # training's stream must not see it, or a resumed run would differ from a straight one.
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                figures = evaluate(images, str(self.device), bf16=self.bf16, labels=self.labels, dataset=self.dataset)
        except EvaluatorError as err:
            raise EvaluationOff(str(err)) from None
        looks_collapsed = bool(rare_digits(figures["hist"])) or figures["kl"] > COLLAPSE_KL
        self.armed |= not looks_collapsed or epoch >= COLLAPSE_ARMED_EPOCHS
        self.collapsed = self.collapsed + 1 if looks_collapsed and self.armed else 0
        return {"event": "quality", "step": step, "epoch": epoch + 1, **figures,
                "collapse": self.collapsed >= COLLAPSE_EVALS, "eval_s": time.perf_counter() - start}

    def warning(self, row: dict[str, Any]) -> str | None:
        """The mode-collapse warning, once, at the evaluation that fires it."""
        if self.collapsed != COLLAPSE_EVALS:
            return None
        missing = rare_digits(row["hist"])
        noun, data = ("digits", "MNIST's") if self.dataset == "mnist" else ("classes", f"{self.dataset}'s")
        rare = f"{noun} {', '.join(map(str, missing))} under 1% of samples, " if missing else ""
        return (f"possible mode collapse at step {row['step']}: {rare}KL {row['kl']:.3f} "
                f"from {data} classes, {COLLAPSE_EVALS} evaluations in a row")

    def state_dict(self) -> dict[str, Any]:
        return {"collapsed": self.collapsed, "collapse_armed": self.armed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.collapsed, self.armed = state.get("collapsed", 0), state.get("collapse_armed", False)
