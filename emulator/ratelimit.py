"""Per-token request limit (Genesys: 300 requests per minute per client-credentials token).

A fixed one-minute window per token, opened by its first request. Every counted response carries
``inin-ratelimit-count`` / ``-allowed`` / ``-reset`` (seconds until the window resets), as Genesys'
responses do; a request over the limit gets 429 with ``Retry-After``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from emulator.clock import Clock

WINDOW_S = 60.0
MAX_WINDOWS = 10_000


@dataclass(frozen=True)
class RateLimitStatus:
    count: int
    allowed: int
    reset_s: int
    exceeded: bool

    def headers(self) -> dict[str, str]:
        return {
            "inin-ratelimit-count": str(self.count),
            "inin-ratelimit-allowed": str(self.allowed),
            "inin-ratelimit-reset": str(self.reset_s),
        }


@dataclass
class _Window:
    opened_at: float
    count: int = 0


class RateLimiter:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, allowed: int, *, enforce: bool) -> RateLimitStatus:
        """Count one request for ``key``; ``exceeded`` tells whether it must be refused."""
        now = self._clock.time()
        with self._lock:
            if len(self._windows) > MAX_WINDOWS:
                self._prune(now)
            window = self._windows.get(key)
            if window is None or now - window.opened_at >= WINDOW_S:
                window = self._windows[key] = _Window(opened_at=now)
            window.count += 1
            reset_s = max(1, math.ceil(window.opened_at + WINDOW_S - now))
            return RateLimitStatus(
                count=window.count,
                allowed=allowed,
                reset_s=reset_s,
                exceeded=enforce and window.count > allowed,
            )

    def _prune(self, now: float) -> None:
        """Forget closed windows (a benchmark's thousands of guest JWTs must not pile up)."""
        self._windows = {k: w for k, w in self._windows.items() if now - w.opened_at < WINDOW_S}

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()
