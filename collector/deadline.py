"""A cycle's deadline: one moment shared by every request of the cycle; a stop request brings it forward."""

from __future__ import annotations

import time


class Deadline:
    """Epoch seconds by which a cycle must be done fetching. ``cut`` only ever moves it earlier (SIGTERM)."""

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at

    def remaining(self) -> float:
        return self.at - time.time()

    def passed(self) -> bool:
        return self.remaining() <= 0

    def cut(self, at: float) -> None:
        self.at = min(self.at, at)

    def __repr__(self) -> str:
        return f"Deadline(in {self.remaining():.1f} s)"
