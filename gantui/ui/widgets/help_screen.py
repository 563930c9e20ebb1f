"""The `?` screen: the keys and what each pane means."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# gantui

| key | does |
|---|---|
| `space` / `p` | pause or resume training (at the next step boundary) |
| `s` | save a checkpoint and a PNG grid of the samples now |
| `r` | resample the preview noise (training is not disturbed) |
| `t` | live settings: learning rates, D steps, penalty weights, EMA (applied at the next step) |
| `q` / `ctrl+c` | save a checkpoint, then quit (in `gantui watch`: leave; the run goes on) |
| `d` | `gantui --nproc N`: detach; the job goes on (`gantui watch` attaches again) |
| `x` | in `gantui watch`: save, then stop the run (asks first) |
| `i` | samples at full resolution (Kitty graphics, sixel, iTerm2: what the terminal answered) or in half blocks |
| `left` / `right` | the Samples pane steps back and forth through the run's saved grids; `end`: live again |
| `?` | this help; `escape` closes it |

Closing the terminal keeps the run going (`gantui watch` attaches again); `q` or `gantui stop` ends it.

**Losses**: generator and discriminator loss (BCE on logits), averaged per logging
interval. D loss near 1.39 (2 ln 2) means D cannot tell real from fake; near 0 means
D has won and G stops learning.

**Discriminator**: D(x) and D(G(z)) are D's mean probability of "real" for real and for
generated images (its mean score under hinge and LSGAN); acc real / acc fake are the share of
each it classifies right. Healthy training keeps them away from 0 and 1. A WGAN run shows a
**Critic** pane: the Wasserstein estimate and the gradient norms. An orange column on a curve
marks a live change of settings.

**Quality**: every few hundred steps a small classifier (MNIST's ships; `gantui evaluator fit`
makes one for another labelled dataset) scores 2000 samples from
fixed noise. FID (on its features; lower is better, real digits score under 1) over time on a
log scale; a bar per class (digit) for its share of the samples (about 10% each is healthy; red
under 1%); classes present, KL from the data's mix (under 0.02 is healthy), mean confidence (a
conditional run: the share drawn as the class asked for), score. A folder of images has no
labels: the pane says evaluation is off.
MODE COLLAPSE? in red: a digit under 1% or KL above 0.1 at two evaluations in a row.

**Samples**: the generator's output for a fixed batch of noise (in colour for RGB data), so
frames are comparable over time. Where the terminal draws pictures (Kitty, Ghostty, WezTerm,
iTerm2, xterm as a VT340, foot...: `--images`), at the images' own resolution, enlarged by whole
factors to fill the pane; elsewhere in half blocks, big images averaged down to fit. Grids are also written to the run directory's `samples/`; `left` and `right` step
through them (the pane's lower edge says which step it shows), `end` returns to the live view,
and `gantui gif RUN --out progress.gif` makes a film of them.

**Status line**: state, device, epoch, step, throughput, elapsed time, ETA, the picture protocol
in use (none shown: half blocks), run directory.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Markdown(HELP)
