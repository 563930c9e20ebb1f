"""Sample quality from the live evaluations: FID over time, the digits' shares, mode collapse."""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Any

from rich.console import RenderableType
from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Static

from gantui.common import HISTORY, RARE_SHARE, rare_digits
from gantui.ui.widgets.sparkline import FastSparkline

BARS = " ▁▂▃▄▅▆▇█"
FULL_SHARE = 0.2  # a digit holding this share of the samples (twice MNIST's ~10%) draws a full bar


def share_style(share: float) -> str:
    """Red under 1% (as good as missing), yellow at half or twice MNIST's ~10%, green between."""
    return "red" if share < RARE_SHARE else "yellow" if not 0.05 <= share <= 0.2 else "green"


def histogram_heights(hist: list[float], rows: int) -> list[int]:
    """Bar heights in eighths of a row; any share at all shows at least a sliver."""
    levels = rows * (len(BARS) - 1)
    return [min(max(round(share / FULL_SHARE * levels), 1 if share > 0 else 0), levels) for share in hist]


def histogram_rows(hist: list[float], rows: int) -> list[Text]:
    """Bars for the digits 0-9, `rows` high (8 levels a row), then a row of labels; 30 columns."""
    heights = histogram_heights(hist, rows)
    lines = []
    for r in range(rows):
        base = (rows - 1 - r) * (len(BARS) - 1)  # the level at this row's bottom
        line = Text()
        for height, share in zip(heights, hist):
            line.append(BARS[min(max(height - base, 0), len(BARS) - 1)] * 2, style=share_style(share))
            line.append(" ")
        lines.append(line)
    labels = Text()
    for digit, share in enumerate(hist):
        labels.append(f"{digit}  ", style="bold red" if share < RARE_SHARE else "dim")
    return [*lines, labels]


def histogram_line(hist: list[float]) -> Text:
    """One row, for a small terminal: `0▄ 1▅ 2▄ ...`."""
    line = Text()
    for digit, (height, share) in enumerate(zip(histogram_heights(hist, 1), hist)):
        line.append(f"{digit}", style="bold red" if share < RARE_SHARE else "dim")
        line.append(f"{BARS[height]} ", style=share_style(share))
    return line


class ClassBars(Widget):
    """The class histogram of the latest evaluation, as tall as the pane allows."""

    hist: reactive[list[float] | None] = reactive(None)

    def render(self) -> RenderableType:
        if self.hist is None:
            return Text("")
        height = self.content_size.height
        return Text("\n").join(histogram_rows(self.hist, height - 1)) if height > 1 else histogram_line(self.hist)


class QualityPane(Vertical):
    """FID (classifier) sparkline on a log scale, the class histogram, and the verdict."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.border_title = "Quality"
        self.fids: deque[float] = deque(maxlen=HISTORY)
        self.header = Static("[b]FID[/b]  waiting for the first evaluation", classes="metric-header")
        self.spark = FastSparkline([])
        self.bars = ClassBars()
        self.verdict = Static("", classes="metric-header")

    def compose(self) -> ComposeResult:
        yield self.header
        yield self.spark
        yield self.bars
        yield self.verdict

    def off(self, reason: str = "--eval-every 0") -> None:
        self.header.update("[b]FID[/b]  [dim]evaluation off[/dim]", layout=False)
        self.verdict.update(f"[dim]{escape(reason)}[/dim]")  # the line that has room for why

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append evaluation rows; the newest one sets the histogram and the verdict."""
        last = None
        for row in rows:
            if math.isfinite(row["fid"]):
                self.fids.append(row["fid"])
            last = row
        if last is None:
            return
        best = min(self.fids, default=math.nan)
        self.header.update(f"[b]FID[/b] {last['fid']:.1f} [dim]best[/dim] {best:.1f} "
                           f"[dim]N={last.get('fid_n', '?')}, log scale[/dim]", layout=False)
        self.border_subtitle = f"step {last['step']}"
        self.spark.data = [math.log10(max(fid, 1e-3)) for fid in self.fids]  # FID falls over decades
        self.bars.hist = list(last["hist"]) if last.get("hist") else None
        if "classes" not in last:  # FID alone (a row written without the classifier's figures)
            verdict = ""
        elif last.get("collapse"):
            rare = ",".join(map(str, rare_digits(last["hist"])))
            verdict = "[b red]MODE COLLAPSE?[/b red] " + (f"digits {rare} under 1%, " if rare else "") + \
                f"KL {last['kl']:.3f}"
        else:
            # A conditional run's figure that matters most takes the confidence's place.
            third = (f"[dim]as asked[/dim] {last['cond_acc']:.1%}" if last.get("cond_acc") is not None
                     else f"[dim]conf[/dim] {last['confidence']:.2f}")
            verdict = f"{last['classes']} digits [dim]KL[/dim] {last['kl']:.3f} {third} [dim]score[/dim] {last['score']:.1f}"
        self.verdict.update(verdict, layout=False)
        self.set_class(bool(last.get("collapse")), "collapse")
