"""The emulator's notion of "now": wall-clock time plus an offset tests can push forward.

Token expiry and rate-limit windows are read from this clock, so a test checks a 24-hour token or
a one-minute window by advancing the clock (``POST /__emulator/clock``) instead of sleeping.
Latency and hang faults use real time: they exist to make a real client wait.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


class Clock:
    def __init__(self) -> None:
        self._offset_s = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        """Seconds since the epoch, as the emulator sees them."""
        # No lock: reading the offset is atomic, and the clock is read a few dozen times per guest
        # message; the lock keeps concurrent advances from losing one another.
        return time.time() + self._offset_s

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset_s += seconds

    @property
    def offset_s(self) -> float:
        return self._offset_s

    def reset(self) -> None:
        with self._lock:
            self._offset_s = 0.0
