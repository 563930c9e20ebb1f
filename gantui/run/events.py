"""What a run tells its consumers: small frozen dataclasses holding plain data.

No live tensors cross the thread boundary: floats, strings and CPU uint8 arrays only. Torch-free:
the dashboard, the socket service and the trainer share these; `run.protocol` puts them on
the wire.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from gantui.common import Pane


@dataclass(frozen=True)
class Capabilities:
    """What a run can do, announced with it (as LSP's `capabilities`): a client reads these, never
    who produced the run. The defaults are the built-in trainer's, and a run's from before runs
    announced them."""

    epochs: bool = True  # it counts epochs and images/s (a loop of your own counts steps)
    resample: bool = True  # its previews come from noise that `r` draws anew (a loop's images are its own)
    evaluates: bool = True  # it fills the Quality pane: its evaluations, or why there are none
    panes: int = 2  # metric panes a dashboard shows; 0: every one its figures fill (a loop's grow)
    recipe: bool = True  # its live settings are the recipe's (config.live_settings()); else those it declared (`tunable`)

    @classmethod
    def read(cls, announced: Any, producer: Any) -> Capabilities:
        """As a snapshot or config.json holds them; a run from before runs announced them has its
        producer's (a loop's, or the trainer's)."""
        own = LOOP if producer == "loop" else cls()  # and what a newer capability would be for it
        if isinstance(announced, dict):
            return replace(own, **{k: v for k, v in announced.items() if k in cls.__dataclass_fields__})
        return own


LOOP = Capabilities(epochs=False, resample=False, evaluates=False, panes=0, recipe=False)  # gantui.init's


@dataclass(frozen=True)
class Started:
    """The run as it stands: sent when it starts, and as a snapshot to a consumer that joins later."""

    run_dir: str
    device: str
    step: int
    total_steps: int
    steps_per_epoch: int
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)  # metric rows so far (from before a resume)
    quality: list[dict[str, Any]] = field(default_factory=list)  # evaluations so far
    state: str = "training"  # one of common.STATES
    epoch: int = 0  # completed epochs
    images_per_s: float = 0.0
    preview: Preview | None = None  # the newest preview, for a late joiner
    finished: Finished | None = None  # set once the run has ended
    live: bool = True  # False: replayed from the run directory, read-only
    elapsed: float = 0.0  # seconds this process has trained the run, as of this event
    schema: list[Pane] = field(default_factory=list)  # the panes its figures fill (GAN.schema)
    sets: list[dict[str, Any]] = field(default_factory=list)  # live changes so far: {"step", "values"}
    # What a client needs and must not guess: the images' (C, H, W), whether the run is evaluated
    # (None: yes; else why not), its class names, its live settings and their values (a run that
    # declares none has no form), what it can do, and who produces it ("gantui": the built-in
    # trainer; "loop"), for people: clients read `capabilities`.
    image_shape: list[int] | None = None
    evaluation: str | None = "not evaluated"
    class_names: list[str] | None = None
    tunable: dict[str, float] | None = None
    # The recipe's live settings and their labels, and those shown but locked (a penalty off since
    # the start), as the run knows them (a penalty registered in its process alone included); None:
    # a run from before runs announced them, whose are config.live_settings()'s
    settings: dict[str, str] | None = None
    locked: list[str] = field(default_factory=list)
    capabilities: Capabilities = field(default_factory=Capabilities)
    producer: str = "gantui"


@dataclass(frozen=True)
class Metrics:
    """One logging interval: a row of metrics.jsonl."""

    row: dict[str, Any]


@dataclass(frozen=True)
class Quality:
    """One evaluation of the fixed latents: a row of metrics.jsonl (fid, classes, kl, hist...)."""

    row: dict[str, Any]


@dataclass(frozen=True)
class Preview:
    step: int
    images: np.ndarray  # uint8 (N, H, W) grey or (N, H, W, 3) RGB, generated from the fixed noise
    source: str = "G"  # which generator: "G" or "EMA G"
    row: int = 0  # a conditional run's tiles per digit (one row each); 0: unconditional


@dataclass(frozen=True)
class Paused:
    paused: bool
    step: int
    by: str | None = None  # the consumer that asked, when one did


@dataclass(frozen=True)
class Saved:
    step: int
    checkpoint: str
    grid: str | None
    reason: str  # "manual", "periodic", "final"


@dataclass(frozen=True)
class Settings:
    """Live settings changed at a step boundary (a `set` row of metrics.jsonl)."""

    step: int
    values: dict[str, Any]


@dataclass(frozen=True)
class Schema:
    """The panes a run's figures fill, announced again when a key is logged for the first time
    (and the images' (C, H, W) once a loop has logged some)."""

    panes: list[Pane]
    image_shape: list[int] | None = None


@dataclass(frozen=True)
class Notice:
    """Something the user should read: a resample, a failed save, a rollback."""

    text: str
    level: str = "information"  # or "warning", "error"


@dataclass(frozen=True)
class Loading:
    """Before Started: a folder of images being decoded (the first time; then it is cached)."""

    done: int
    total: int


@dataclass(frozen=True)
class Finished:
    reason: str  # "done", "stopped", "diverged", "error"
    step: int
    checkpoint: str | None = None
    error: str | None = None


Event = Started | Metrics | Quality | Preview | Paused | Saved | Settings | Schema | Notice | Loading | Finished
