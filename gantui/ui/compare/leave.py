"""Leaving a sweep's view: stop its trials (each saves), or leave them running."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Static


class LeaveSweepScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("s", "answer('stop')", "Stop the sweep"), Binding("l", "answer('leave')", "Leave it running"),
                Binding("escape,n", "answer(None)", "Back")]

    def compose(self) -> ComposeResult:
        yield Static("Leave the sweep's view.\n\n"
                     "[b]s[/b]  stop the sweep: every running trial saves, then stops "
                     "(gantui sweep --resume continues it)\n"
                     "[b]l[/b]  leave it running: the view closes, the sweep goes on here, a line per trial "
                     "(gantui compare SWEEP shows its trials)\n"
                     "[b]escape[/b]  back", id="confirm")

    def action_answer(self, choice: str | None) -> None:
        self.dismiss(choice)
