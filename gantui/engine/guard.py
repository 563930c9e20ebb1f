"""The divergence guard: what counts as a run going wrong, and how many rollbacks it gets."""
from __future__ import annotations

import math
from typing import Any

from gantui.engine.objectives import Objective

MAX_ROLLBACKS = 3  # then the run stops as "diverged"
D_WON_INTERVALS = 5  # logging intervals in a row in which D won outright: collapse
GRAD_NORM_LIMIT = 1e4


class Guard:
    """Checks each metrics row: non-finite figures, exploding gradients, and D winning outright
    as the objective defines it (a WGAN critic has no such check). The caller rolls back."""

    def __init__(self, objective: Objective) -> None:
        self.objective = objective
        self.rollbacks = 0
        self.d_won = 0
        self.diverged: str | None = None

    def problem(self, row: dict[str, Any], keys: list[str]) -> str | None:
        """What is wrong with this interval, or None; a problem past the limit sets `diverged`."""
        grads = math.hypot(row["grad_g"], row["grad_d"])
        problem = None
        if not all(math.isfinite(row[k]) for k in keys) or not math.isfinite(grads):
            problem = "non-finite loss or gradient"
        elif grads > GRAD_NORM_LIMIT:
            problem = f"gradient norm {grads:.3g} above {GRAD_NORM_LIMIT:g}"
        else:
            self.d_won = self.d_won + 1 if self.objective.won(row) else 0
            if self.d_won >= D_WON_INTERVALS:
                problem = f"discriminator won outright for {D_WON_INTERVALS} intervals"
        if problem is not None and self.rollbacks >= MAX_ROLLBACKS:
            self.diverged = problem
        return problem

    def rolled_back(self) -> None:
        self.rollbacks += 1
        self.d_won = 0

    def state_dict(self) -> dict[str, Any]:
        return {"rollbacks": self.rollbacks, "d_won": self.d_won}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rollbacks, self.d_won = state.get("rollbacks", 0), state.get("d_won", 0)
