"""Exponential backoff with jitter, for reconnecting to the database or broker."""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from `first` up to `cap`, each with up to 50 % jitter."""

    def __init__(self, first: float = 0.05, cap: float = 5.0) -> None:
        self._first, self._cap, self._current = first, cap, first

    def next(self) -> float:
        delay = min(self._cap, self._current) * (0.5 + random.random() / 2)
        self._current = min(self._cap, self._current * 2)
        return delay

    def reset(self) -> None:
        self._current = self._first
