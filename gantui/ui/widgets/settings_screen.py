"""The `t` form: the run's live settings, checked as their flags are, sent as one `set` command.

Torch-free (config.py is): the same rules and messages as `--lr-g`, `--d-steps` ... The run
applies the change at its next step boundary, whichever terminal sent it.
"""
from __future__ import annotations

import math
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from gantui.config import ConfigError, check_live, flag, live_settings


def shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_declared(name: str, value: Any) -> float:
    if not isinstance(value, float | int) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    return float(value)


class SettingsScreen(ModalScreen[dict[str, Any] | None]):
    """Dismissed with the changed settings (checked), or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, current: dict[str, Any], locked: frozenset[str] = frozenset(), *,
                 declared: bool = False, fields: dict[str, str] | None = None) -> None:
        """`locked`: settings shown but not editable (a penalty the run did not start with);
        `declared`: the settings a user's loop declared (`current`), any finite number each;
        `fields`: the recipe's live settings and labels as the run announced them (default: this
        process's). One this process does not know (a penalty registered in the run's alone) is
        checked as a number here and by its own rule in the run."""
        super().__init__()
        self.declared = declared
        self.fields = {name: name for name in current} if declared else fields or live_settings()
        known = live_settings()
        self.check = check_declared if declared else (
            lambda name, value: check_live(name, value) if name in known else check_declared(name, value))
        self.current = {name: current.get(name) for name in self.fields}
        self.locked = locked

    def compose(self) -> ComposeResult:
        with Vertical(id="settings"):
            yield Static("[b]Live settings[/b]  applied at the next step; [b]enter[/b] applies, [b]escape[/b] cancels")
            with Grid(id="settings-grid"):
                for name, label in self.fields.items():
                    yield Label(label if self.declared else f"{label} [dim]--{flag(name)}[/dim]")
                    value = self.current[name]
                    field = Input(shown(value) if value is not None else "", id=name, disabled=name in self.locked)
                    if name in self.locked:
                        field.tooltip = f"off since the start: resume with --{flag(name)} W to use it"
                    yield field
            yield Static("", id="settings-error")

    def values(self) -> dict[str, Any]:
        """The changed fields, checked; ConfigError names the first bad one."""
        changed = {}
        for name in (n for n in self.fields if n not in self.locked):
            text = self.query_one(f"#{name}", Input).value.strip()
            try:
                value = int(text) if name == "d_steps" else float(text)
            except ValueError:
                value = text
            value = self.check(name, value)
            if value != self.current[name]:
                changed[name] = value
        return changed

    @on(Input.Submitted)
    def submitted(self) -> None:
        try:
            self.dismiss(self.values() or None)
        except ConfigError as err:
            self.query_one("#settings-error", Static).update(f"[b red]{err}[/b red]")
