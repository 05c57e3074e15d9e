"""Sliding-window limits of the Web Messaging guest socket (Genesys' org limits page).

Per deployment (its fixture's ``connections_per_minute``, 1,000 by default, and ``messages_per_second``,
5 by default): new guest sockets per minute and messages per second per session. Fixed: 60 requests per
minute per connection, 2 echoes per minute per connection. A sliding window (not the fixed window of
the REST limiter) because these limits are short and a client that waits ``retryAfter`` must then get
through. Time comes from the emulator's clock, so a test can advance it instead of sleeping.
"""

from __future__ import annotations

import math
from collections import deque

REQUESTS_PER_MINUTE = 60
ECHOES_PER_MINUTE = 2


class SlidingWindow:
    """At most ``limit`` hits in any ``period_s``."""

    def __init__(self, limit: int, period_s: float) -> None:
        self._limit = limit
        self._period_s = period_s
        self._hits: deque[float] = deque()

    def hit(self, now: float) -> int | None:
        """Count a hit at ``now``; when over the limit the hit is not counted and the answer is the
        whole seconds (at least 1) until one would be allowed - the frame's ``retryAfter``."""
        while self._hits and now - self._hits[0] >= self._period_s:
            self._hits.popleft()
        if len(self._hits) >= self._limit:
            return max(1, math.ceil(self._hits[0] + self._period_s - now))
        self._hits.append(now)
        return None
