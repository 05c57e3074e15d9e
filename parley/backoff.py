"""Exponential backoff with jitter: the one formula every wait-and-try-again in Parley uses.

After ``retries`` failed tries (0 before the first retry) the wait is drawn from the top ``jitter``
fraction of a window that doubles from ``base_s`` up to ``cap_s``::

    window = min(cap_s, base_s * factor ** retries)
    delay  = uniform(window * (1 - jitter), window)

``jitter=1`` is AWS' "full jitter" (``uniform(0, window)``): workers that failed together spread over
the whole window instead of coming back in lockstep. ``jitter=0`` is the window itself, for a lone
caller with nobody to collide with. When the server said how long to wait (``Retry-After``),
:func:`after_retry_after` waits that, never less than a floor, plus a little jitter.

Who uses it, with what:

* the retry policy (:mod:`tasks.retry_policy`): a failed Genesys call, full jitter, Retry-After;
* the guest protocols (:class:`guest.common.Backoff`): reconnects and re-sends, half jitter, so a
  session never comes straight back and many sessions dropped together do not return in step;
* the webhook relay (:mod:`workers.webhook`): no jitter; one relay holds the line.

Pure: no clock, no I/O; randomness comes from the caller (``random.Random`` in production, a stub in
tests), so the sans-I/O guest machines can use it too.
"""

from __future__ import annotations

from typing import Protocol


class Uniform(Protocol):
    """Where jitter comes from: ``random.Random`` (or the ``random`` module) in production, a stub in tests."""

    def uniform(self, a: float, b: float) -> float: ...


def window_s(retries: int, base_s: float, cap_s: float, factor: float = 2.0) -> float:
    """The longest wait after ``retries`` failed tries: ``min(cap_s, base_s * factor ** retries)``."""
    try:
        return min(cap_s, base_s * factor ** retries)
    except OverflowError:  # a huge retry count: far past the cap anyway
        return cap_s


def delay_s(retries: int, base_s: float, cap_s: float, rng: Uniform, *, jitter: float = 1.0,
            factor: float = 2.0) -> float:
    """A wait drawn from the top ``jitter`` fraction of :func:`window_s` (1: the whole window)."""
    window = window_s(retries, base_s, cap_s, factor)
    return rng.uniform(window * (1.0 - jitter), window)


def after_retry_after(retry_after_s: float, floor_s: float, jitter_s: float, rng: Uniform) -> float:
    """The wait the server asked for, at least ``floor_s`` (so ``Retry-After: 0`` cannot spin), plus up to
    ``jitter_s`` (so callers limited together do not come back together)."""
    return max(retry_after_s, floor_s) + rng.uniform(0, jitter_s)
