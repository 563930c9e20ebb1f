"""Textual messages that carry trainer events across the one thread boundary."""
from __future__ import annotations

from textual.message import Message

from gantui.run import events as ev


class EngineEvent(Message):
    """Any trainer event, posted from the trainer thread with `post_message` (never blocks)."""

    def __init__(self, event: ev.Event) -> None:
        super().__init__()
        self.event = event


class PreviewEvent(EngineEvent):
    """Previews replace each other in the queue: a slow terminal only draws the newest."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, PreviewEvent)


def message_for(event: ev.Event) -> EngineEvent:
    return PreviewEvent(event) if isinstance(event, ev.Preview) else EngineEvent(event)
