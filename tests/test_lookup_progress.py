"""A recovery lookup that reads many conversations makes progress through failed reads (issue 10).

Chaos finding: a ``chat.create`` whose answer was lost read every chat its queue got while the attempt
ran; a 503 on any one read spent an attempt and the next attempt started over, so under a steady rate
of 5xx it gave up after its 12 attempts. :func:`first_found` remembers what it read.
"""

from __future__ import annotations

from datetime import UTC, datetime

import fakeredis
import pytest

from genesys.errors import GenesysError, GenesysTimeout, RateLimitInfo
from parley.settings import Settings
from tasks.context import ExecutionContext, NotYet
from tasks.handlers.reading import first_found

LOST_AT = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def context(redis_client: fakeredis.FakeRedis, unknown_until: datetime = LOST_AT) -> ExecutionContext:
    return ExecutionContext(settings=Settings(), redis=redis_client, command_id="c1", attempt=2, recovering=True,
                            previous_attempt_started_at=LOST_AT, unknown_until=unknown_until,
                            genesys_factory=lambda: None)  # type: ignore[arg-type,return-value]


class Reads:
    """``look``: answers from a script per conversation id (an exception to raise, or a value), logs calls."""

    def __init__(self, **script: object) -> None:
        self.script = {cid: list(answers) if isinstance(answers, list) else [answers]
                       for cid, answers in script.items()}
        self.calls: list[str] = []

    def __call__(self, conversation_id: str) -> str | None:
        self.calls.append(conversation_id)
        answers = self.script.get(conversation_id, [None])
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[return-value]


@pytest.fixture
def redis_client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(decode_responses=True)


def test_a_read_failing_after_progress_waits_and_the_next_attempt_reads_on(redis_client) -> None:
    reads = Reads(c=[GenesysError(status=503), None], d="found")
    with pytest.raises(NotYet) as waited:
        first_found(context(redis_client), ["a", "b", "c", "d"], reads)
    assert "read 2 more" in waited.value.reason and "503" in waited.value.reason
    assert first_found(context(redis_client), ["a", "b", "c", "d"], reads) == "found"
    assert reads.calls == ["a", "b", "c", "c", "d"]  # a and b were not read again


def test_a_read_failing_before_any_progress_spends_the_attempt(redis_client) -> None:
    """Genesys failing every read is a failure the retry policy must count, or a lookup could wait forever."""
    with pytest.raises(GenesysError):
        first_found(context(redis_client), ["a"], Reads(a=GenesysError(status=503)))
    reads = Reads(b=GenesysTimeout("read timeout"))
    with pytest.raises(NotYet):
        first_found(context(redis_client), ["a2", "b"], reads)
    with pytest.raises(GenesysTimeout):  # resumed at b, which fails again first: that one counts
        first_found(context(redis_client), ["a2", "b"], reads)


def test_a_permanent_error_is_raised_even_after_progress(redis_client) -> None:
    with pytest.raises(GenesysError):
        first_found(context(redis_client), ["a", "b"], Reads(b=GenesysError(status=403)))


def test_retry_after_sets_the_wait(redis_client) -> None:
    limited = GenesysError(status=429, rate_limit=RateLimitInfo(retry_after_s=7))
    with pytest.raises(NotYet) as waited:
        first_found(context(redis_client), ["a", "b"], Reads(b=limited))
    assert waited.value.delay_s == 7


def test_a_new_window_of_unknown_outcome_reads_everything_again(redis_client) -> None:
    """A later lost attempt may have put its effect into a conversation read empty before it."""
    assert first_found(context(redis_client), ["a", "b"], Reads()) is None
    later = context(redis_client, unknown_until=datetime(2026, 12, 2, 9, 5, tzinfo=UTC))
    reads = Reads(b="found")
    assert first_found(later, ["a", "b"], reads) == "found"
    assert reads.calls == ["a", "b"]


def test_nothing_found_reads_each_once(redis_client) -> None:
    reads = Reads()
    assert first_found(context(redis_client), ["a", "b"], reads) is None
    assert first_found(context(redis_client), ["a", "b", "c"], reads) is None
    assert reads.calls == ["a", "b", "c"]
