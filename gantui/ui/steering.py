"""The dashboard's keys: commands to the run through its link, the same from any terminal."""
from __future__ import annotations

from typing import Any

from gantui.penalties import PENALTIES
from gantui.ui.widgets.confirm_screen import ConfirmScreen
from gantui.ui.widgets.help_screen import HelpScreen
from gantui.ui.widgets.settings_screen import SettingsScreen

STEERING = ("pause", "resume", "toggle_pause", "save", "resample", "stop_run", "tune", "detach")


class Steering:
    """Mixed into GanApp: `link`, `started`, `finished`, `lost`, `paused` are the app's."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        can = self.started.capabilities if self.started is not None else None
        if can and ((action == "resample" and not can.resample) or (action == "tune" and not can.recipe and not self.started.tunable)):
            return False  # a loop's images are its own; a loop that declares no settings has no form
        if action == "detach" and not self.job:
            return False  # only a job this dashboard started goes on without it (a watcher's q leaves)
        if action in STEERING and not self.steerable():
            return None  # greyed out once the run has ended, or for a replay
        if action == "stop_run":
            return not self.owner  # the owner's q stops the run
        if action == "pause":
            return not self.paused  # False hides it: the footer shows Pause or Resume
        if action == "resume":
            return self.paused
        return True

    def steerable(self) -> bool:
        live = self.link.live and (self.started is None or self.started.live)
        return live and self.finished is None and not self.lost

    def send(self, cmd: str, **fields: Any) -> None:
        try:
            self.link.send({"cmd": cmd, **fields})
        except (RuntimeError, ValueError) as err:  # ValueError: a setting the run refused  # the run has just ended, or the link has gone
            self.notify(str(err), severity="warning")

    def action_pause(self) -> None:
        self.send("pause")
        self.paused = True

    def action_resume(self) -> None:
        self.send("resume")
        self.paused = False

    def action_toggle_pause(self) -> None:
        self.action_resume() if self.paused else self.action_pause()

    def action_save(self) -> None:
        self.send("save")
        self.notify("saving a checkpoint and a sample grid...")

    def action_resample(self) -> None:
        self.send("resample")

    def action_stop_run(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.send("stop")
                self.notify("stopping the run: it saves a checkpoint first...")

        self.push_screen(ConfirmScreen("Stop the run? It saves a checkpoint, then ends."), answered)

    def action_quit_run(self) -> None:
        if self.finished is not None or self.lost or not self.owner:
            self.leaving.leave(self.leaving.exit_code())  # a watcher leaves; the run goes on
            return
        if not self.quitting:
            self.quitting = True
            self.notify("saving a checkpoint, then quitting...")
        self.send("stop")

    def action_tune(self) -> None:
        """The live settings form; a change goes to the run as one `set` command."""
        def answered(values: dict[str, Any] | None) -> None:
            if values:
                self.send("set", values=values)

        if isinstance(self.screen, SettingsScreen) or self.started is None:
            return
        if not self.started.capabilities.recipe:  # a loop of the user's: the settings it declared
            if not self.started.tunable:
                self.notify("this run declares no live settings (gantui.init(..., tunable={...}))")
                return
            self.push_screen(SettingsScreen(self.started.tunable, declared=True), answered)
            return
        config, settings = self.started.config, self.started.settings
        if settings is None:  # a run from before runs announced them: this process's, the penalties
            reported = {key for pane in self.started.schema for key, _, _ in pane.lines}  # off since the start locked
            locked = frozenset(k for k in PENALTIES if k not in reported and not config.get(k))
        else:
            locked = frozenset(self.started.locked)
        self.push_screen(SettingsScreen(config, locked, fields=settings), answered)

    def action_detach(self) -> None:
        self.leaving.detach_job()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_scrub(self, by: int) -> None:
        """left/right: the Samples pane steps through the run's saved grids."""
        if (why := self.preview_pane.step_through(by)) is not None:
            self.notify(why, severity="warning")

    def action_live_samples(self) -> None:
        self.preview_pane.back_to_live()
