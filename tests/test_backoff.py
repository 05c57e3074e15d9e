"""The one backoff formula: window, jitter, Retry-After."""

from __future__ import annotations

import random

from parley.backoff import after_retry_after, delay_s, window_s


class Top:
    """A jitter source that always picks the upper end."""

    def uniform(self, a: float, b: float) -> float:
        return max(a, b)


def test_the_window_doubles_from_the_base_up_to_the_cap() -> None:
    assert [window_s(n, 0.5, 4.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_huge_retry_count_is_the_cap_not_an_overflow() -> None:
    assert window_s(10**6, 1.0, 30.0) == 30.0
    assert window_s(10**6, 1.0, 30.0, factor=3.0) == 30.0


def test_full_jitter_spans_the_whole_window_and_half_jitter_its_top_half() -> None:
    rng = random.Random(7)
    full = [delay_s(3, 1.0, 60.0, rng) for _ in range(500)]
    half = [delay_s(3, 1.0, 60.0, rng, jitter=0.5) for _ in range(500)]
    assert 0 <= min(full) < 1.0 and 7.0 < max(full) <= 8.0
    assert 4.0 <= min(half) < 4.1 and max(half) <= 8.0
    assert delay_s(3, 1.0, 60.0, Top(), jitter=0.0) == 8.0


def test_retry_after_is_honoured_with_a_floor_and_bounded_jitter() -> None:
    assert after_retry_after(7.0, 1.0, 2.0, Top()) == 9.0
    assert after_retry_after(0.0, 1.5, 0.0, Top()) == 1.5
