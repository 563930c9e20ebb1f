"""A run's curves at any length, in bounded memory: the newest rows in full, older ones thinned.

TensorBoard keeps a reservoir of points per tag; a reservoir forgets at random, while a curve wants
its shape, so this keeps a stride instead: rows leaving the recent window are kept one in `stride`,
and when the older part is full it drops every other row and doubles the stride. The first row
is always kept, so the curve covers the whole run: at most `recent + older` rows, whatever the
run's length. The hub, the checkpoints, the snapshots and the replays all hold one of these.

Rows are bounded by their values too (`values`, split the same way): a loop logging a norm per
layer writes rows of thousands of keys, and 2,000 rows of 1,000 keys held 112 MB in the hub alone.
Such a run keeps fewer rows, each whole; a run of a few dozen keys a row never reaches the bound.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from gantui.common import HISTORY

Row = dict[str, Any]
VALUES = HISTORY * 50  # values (keys of rows) kept at most: about 6 MB of floats in dicts


class History:
    def __init__(self, rows: Iterable[Row] = (), size: int = HISTORY, values: int = VALUES) -> None:
        self.recent: deque[Row] = deque()
        self.recent_max, self.recent_values_max = size // 2, values // 2
        self.older: list[Row] = []
        self.older_max, self.older_values_max = size - size // 2, values - values // 2
        self.recent_values = self.older_values = 0
        self.stride = 1
        self.aged = 0  # rows that have left the recent window, kept or not
        self.extend(rows)

    def append(self, row: Row) -> None:
        self.recent.append(row)
        self.recent_values += len(row)
        while len(self.recent) > 1 and (len(self.recent) > self.recent_max
                                        or self.recent_values > self.recent_values_max):
            old = self.recent.popleft()
            self.recent_values -= len(old)
            self._age(old)

    def extend(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.append(row)

    def _age(self, row: Row) -> None:
        if self.aged % self.stride == 0:
            self.older.append(row)
            self.older_values += len(row)
            while len(self.older) > 1 and (len(self.older) > self.older_max
                                           or self.older_values > self.older_values_max):
                self.older = self.older[::2]
                self.older_values = sum(len(r) for r in self.older)
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
        self.recent_values = self.older_values = 0
