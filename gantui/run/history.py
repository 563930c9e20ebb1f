"""A run's curves at any length, in bounded memory: the newest rows in full, older ones thinned.

TensorBoard keeps a reservoir of points per tag; a reservoir forgets at random, while a curve wants
its shape, so this keeps a stride instead: rows leaving the recent window are kept one in `stride`,
and when the older part is full it drops every other row and doubles the stride. The first row
is always kept, so the curve covers the whole run: at most `recent + older` rows, whatever the
run's length. The hub, the checkpoints, the snapshots and the replays all hold one of these.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from gantui.common import HISTORY

Row = dict[str, Any]


class History:
    def __init__(self, rows: Iterable[Row] = (), size: int = HISTORY) -> None:
        self.recent: deque[Row] = deque(maxlen=size // 2)
        self.older: list[Row] = []
        self.older_max = size - size // 2
        self.stride = 1
        self.aged = 0  # rows that have left the recent window, kept or not
        self.extend(rows)

    def append(self, row: Row) -> None:
        if len(self.recent) == self.recent.maxlen:
            self._age(self.recent[0])
        self.recent.append(row)

    def extend(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.append(row)

    def _age(self, row: Row) -> None:
        if self.aged % self.stride == 0:
            self.older.append(row)
            if len(self.older) > self.older_max:
                self.older = self.older[::2]
                self.stride *= 2
        self.aged += 1

    def __iter__(self) -> Iterator[Row]:
        yield from self.older
        yield from self.recent

    def __len__(self) -> int:
        return len(self.older) + len(self.recent)

    def __bool__(self) -> bool:
        return bool(self.recent)

    def __getitem__(self, index: int) -> Row:
        """The newest rows by negative index (what the guard and the status need)."""
        return self.recent[index] if index < 0 else list(self)[index]

    def clear(self) -> None:
        self.recent.clear()
        self.older, self.stride, self.aged = [], 1, 0
