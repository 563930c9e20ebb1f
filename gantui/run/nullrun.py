"""The run of a rank that publishes nothing: `gantui.Run`'s every public call, each doing nothing
(tests/test_surface.py holds them to the same names and parameters)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gantui.run.arguments import RunConfig

class NullRun:
    """What a rank other than 0 gets where there is no process group to agree through (and a run
    that could not be opened): `Run`'s every public call, each doing nothing."""

    should_stop = False
    ranks_agree = False
    path = None
    step = 0

    @property
    def tunable(self) -> dict[str, float]:
        return {}

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None: ...
    def log_images(self, images: Any, step: int | None = None) -> None: ...
    def poll(self, step: int | None = None) -> None: ...
    def on_save(self, fn: Callable[[], Any]) -> None: ...
    def on_set(self, fn: Callable[[dict[str, float]], Any]) -> None: ...
    def flush(self) -> None: ...
    def notice(self, text: str, step: int | None = None, tag: str | None = None) -> None: ...
    def finish(self, error: str | None = None) -> None: ...
    def steer_with_poll(self) -> None: ...

    @property
    def config(self) -> RunConfig:
        return RunConfig({}, lambda: None)

    def __enter__(self) -> NullRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None: ...
