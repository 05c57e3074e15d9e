"""The retry policy: every class of Genesys failure, jitter bounds, caps, overrides, exhaustion."""

from __future__ import annotations

import random

import pytest
from pydantic import TypeAdapter, ValidationError

from genesys.errors import (
    GenesysConnectionError,
    GenesysError,
    GenesysInvalidResponse,
    GenesysTimeout,
    GenesysTransportError,
    RateLimitInfo,
)
from tasks.retry_policy import (
    Backoff,
    BackoffOverrides,
    Decision,
    Exhausted,
    Permanent,
    Retry,
    RetryKind,
    RetryPolicy,
)

SEND = "message.send"


class Fixed:
    """A jitter source that always returns the same fraction of the window."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return a + (b - a) * self.fraction


TOP = Fixed(1.0)
BOTTOM = Fixed(0.0)


def err(status: int, code: str = "", retry_after_s: float | None = None) -> GenesysError:
    return GenesysError(
        status=status, code=code, message="customer said: hello", rate_limit=RateLimitInfo(retry_after_s)
    )


def policy(**kw: object) -> RetryPolicy:
    return RetryPolicy(**{"base_s": 1.0, "cap_s": 30.0, "max_attempts": 5, "max_delay_s": 100.0, **kw})


def retry(decision: Decision) -> Retry:
    assert isinstance(decision, Retry), decision
    return decision


# --- transient HTTP answers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "kind", "unknown"),
    [
        (409, "request.conflict", RetryKind.CONFLICT, False),
        (409, "", RetryKind.CONFLICT, False),  # an unnamed 409 is still a conflict
        (408, "client.timeout", RetryKind.REQUEST_TIMEOUT, False),
        (500, "internal.server.error", RetryKind.SERVER_ERROR, True),
        (500, "conversation.participant.update.failed", RetryKind.SERVER_ERROR, True),
        (502, "", RetryKind.SERVER_ERROR, True),
        (503, "service.unavailable", RetryKind.SERVER_ERROR, True),
        (504, "request.timeout", RetryKind.SERVER_ERROR, True),
    ],
)
def test_transient_http_errors_back_off(status: int, code: str, kind: RetryKind, unknown: bool) -> None:
    d = retry(policy().decide(err(status, code), 2, SEND, rng=TOP))
    assert d.kind is kind
    assert d.outcome_unknown is unknown
    assert d.delay_s == 4.0  # top of the window base * 2**2
    assert str(status) in d.reason


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (GenesysTimeout("read timeout", method="POST", path="/x"), RetryKind.TIMEOUT),
        (GenesysConnectionError("reset"), RetryKind.CONNECTION),
        (GenesysTransportError("other"), RetryKind.CONNECTION),
    ],
)
def test_transport_errors_back_off_with_outcome_unknown(exc: Exception, kind: RetryKind) -> None:
    d = retry(policy().decide(exc, 0, SEND, rng=TOP))
    assert d.kind is kind
    assert d.outcome_unknown is True
    assert d.delay_s == 1.0


def test_usage_limit_409_is_permanent_not_a_conflict() -> None:
    d = policy().decide(err(409, "organization.outbound.usage.limit.exceeded"), 0, SEND)
    assert isinstance(d, Permanent)
    assert "organization.outbound.usage.limit.exceeded" in d.reason


# --- full jitter ------------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", range(8))
def test_full_jitter_window_doubles_until_the_cap(attempt: int) -> None:
    p = policy(max_attempts=100)
    window = min(30.0, 1.0 * 2**attempt)
    source = Fixed(0.5)
    d = retry(p.decide(err(409, "request.conflict"), attempt, SEND, rng=source))
    assert source.calls == [(0, window)]  # uniform over the whole window: full jitter
    assert d.delay_s == window / 2
    assert retry(p.decide(err(409, "request.conflict"), attempt, SEND, rng=BOTTOM)).delay_s == 0


def test_jitter_stays_in_bounds_with_a_real_random_source() -> None:
    p = policy(max_attempts=1000)
    rng = random.Random(7)
    for attempt in range(200):
        d = retry(p.decide(err(503, "service.unavailable"), attempt, SEND, rng=rng))
        assert 0 <= d.delay_s <= min(30.0, 2.0**attempt)


def test_huge_attempt_numbers_do_not_overflow() -> None:
    d = retry(policy(max_attempts=10**6).decide(err(409, "request.conflict"), 5000, SEND, rng=TOP))
    assert d.delay_s == 30.0


def test_max_delay_is_a_hard_ceiling_on_backoff() -> None:
    p = policy(cap_s=1000.0, max_delay_s=20.0, max_attempts=100)
    d = retry(p.decide(err(503), 12, SEND, rng=TOP))
    assert d.delay_s == 20.0
    assert "capped" in d.reason


def test_default_random_source_is_used_when_none_is_injected() -> None:
    d = retry(policy().decide(err(409, "request.conflict"), 3, SEND))
    assert 0 <= d.delay_s <= 8.0


# --- 429 and Retry-After ----------------------------------------------------------------------------


def test_429_waits_retry_after_plus_bounded_jitter() -> None:
    p = policy(retry_after_jitter_s=2.0)
    assert retry(p.decide(err(429, "too.many.requests.retry.after", 7), 0, SEND, rng=BOTTOM)).delay_s == 7
    top = retry(p.decide(err(429, "too.many.requests.retry.after", 7), 0, SEND, rng=TOP))
    assert top.delay_s == 9.0
    assert top.kind is RetryKind.RATE_LIMITED
    assert top.outcome_unknown is False
    assert "Retry-After 7 s" in top.reason


def test_retry_after_ignores_the_attempt_number() -> None:
    d = retry(policy(max_attempts=10).decide(err(429, "too.many.requests", 3), 4, SEND, rng=BOTTOM))
    assert d.delay_s == 3  # not base * 2**4


def test_retry_after_below_the_floor_waits_the_floor() -> None:
    d = retry(policy(retry_after_floor_s=1.5).decide(err(429, "", 0), 0, SEND, rng=BOTTOM))
    assert d.delay_s == 1.5


def test_429_without_retry_after_backs_off() -> None:
    d = retry(policy().decide(err(429, "too.many.requests"), 3, SEND, rng=TOP))
    assert d.delay_s == 8.0
    assert d.kind is RetryKind.RATE_LIMITED


def test_retry_after_beyond_the_ceiling_is_capped() -> None:
    d = retry(policy(max_delay_s=50.0).decide(err(429, "", 600), 0, SEND, rng=BOTTOM))
    assert d.delay_s == 50.0
    assert "capped" in d.reason


def test_503_with_retry_after_honours_it() -> None:
    d = retry(policy().decide(err(503, "service.unavailable", 12), 0, SEND, rng=BOTTOM))
    assert d.delay_s == 12
    assert d.outcome_unknown is True


# --- 401 and 400 active.conversation: handled before the policy (genesys.client, message.send) -----


@pytest.mark.parametrize("code", ["authentication.required", "bad.credentials", "credentials.expired", ""])
def test_401_after_the_clients_own_refresh_is_permanent(code: str) -> None:
    d = policy().decide(err(401, code), 0, SEND)
    assert isinstance(d, Permanent)
    assert "a fresh token does not help" in d.reason


def test_401_ip_not_authorized_is_permanent_at_once() -> None:
    assert isinstance(policy().decide(err(401, "ip.not.authorized"), 0, SEND), Permanent)


def test_active_conversation_after_the_handlers_send_into_it_is_permanent() -> None:
    d = policy().decide(err(400, "active.conversation"), 0, SEND)
    assert isinstance(d, Permanent)
    assert "even when sending into the live conversation" in d.reason


# --- permanent 4xx ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "bad.request"),
        (400, "not.a.user"),
        (400, "existing.conversation"),
        (400, "chat.error.conversation.state"),
        (403, "missing.any.permissions"),
        (404, "conversation.error.conversation.not.found"),
        (404, "chat.error.not.found"),
        (413, "request.entity.too.large"),
        (415, "unsupported.media.type"),
        (422, ""),
    ],
)
def test_other_4xx_are_permanent(status: int, code: str) -> None:
    d = policy().decide(err(status, code), 0, SEND)
    assert isinstance(d, Permanent)
    assert d.reason == f"{status} {code}".strip()


def test_reasons_never_carry_the_error_message() -> None:
    p = policy()
    for exc in (err(400, "bad.request"), err(409, "request.conflict"), err(401, ""), err(503)):
        assert "hello" not in p.decide(exc, 0, SEND, rng=TOP).reason


def test_unexpected_exceptions_are_permanent() -> None:
    d = policy().decide(KeyError("x"), 0, SEND)
    assert isinstance(d, Permanent)
    assert d.reason == "unexpected KeyError"


def test_unreadable_success_is_permanent_because_it_took_effect() -> None:
    d = policy().decide(GenesysInvalidResponse("bad body", status=200), 0, SEND)
    assert isinstance(d, Permanent)
    assert "took effect" in d.reason


def test_negative_attempt_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="attempt"):
        policy().decide(err(503), -1, SEND)


# --- exhaustion -------------------------------------------------------------------------------------


def test_max_attempts_counts_executions_including_the_first() -> None:
    p = policy(max_attempts=3)
    assert isinstance(p.decide(err(409, "request.conflict"), 0, SEND, rng=TOP), Retry)
    assert isinstance(p.decide(err(409, "request.conflict"), 1, SEND, rng=TOP), Retry)
    d = p.decide(err(409, "request.conflict"), 2, SEND, rng=TOP)
    assert isinstance(d, Exhausted)
    assert d.attempts == 3
    assert d.kind is RetryKind.CONFLICT
    assert d.outcome_unknown is False


def test_exhausted_transport_failure_keeps_outcome_unknown() -> None:
    d = policy(max_attempts=1).decide(GenesysTimeout("t"), 0, SEND)
    assert isinstance(d, Exhausted)
    assert d.outcome_unknown is True
    assert d.kind is RetryKind.TIMEOUT


def test_rate_limit_exhausts_too() -> None:
    assert isinstance(policy(max_attempts=2).decide(err(429, "", 5), 1, SEND), Exhausted)


# --- per command type overrides ---------------------------------------------------------------------


def test_overrides_apply_only_to_their_command_type() -> None:
    p = policy(overrides={"cobrowse.start": BackoffOverrides(base_s=0.5, max_attempts=10)})
    assert p.backoff_for("cobrowse.start") == Backoff(base_s=0.5, cap_s=30.0, max_attempts=10)
    assert p.backoff_for(SEND) == Backoff(base_s=1.0, cap_s=30.0, max_attempts=5)
    assert retry(p.decide(err(409, "request.conflict"), 3, "cobrowse.start", rng=TOP)).delay_s == 4.0
    assert retry(p.decide(err(409, "request.conflict"), 3, SEND, rng=TOP)).delay_s == 8.0
    assert isinstance(p.decide(err(409, "request.conflict"), 6, "cobrowse.start", rng=TOP), Retry)
    assert isinstance(p.decide(err(409, "request.conflict"), 6, SEND, rng=TOP), Exhausted)


def test_override_cap() -> None:
    p = policy(max_attempts=50, overrides={"conversation.end": {"cap_s": 2.0}})
    assert retry(p.decide(err(503), 10, "conversation.end", rng=TOP)).delay_s == 2.0


def test_settings_are_validated() -> None:
    with pytest.raises(ValidationError):
        RetryPolicy(base_s=0)
    with pytest.raises(ValidationError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValidationError):
        RetryPolicy(overrides={"x": {"max_attemps": 3}})  # a typo is an error, not a silent default


def test_policy_loads_from_plain_json() -> None:
    p = RetryPolicy.model_validate_json('{"max_delay_s": 120, "overrides": {"chat.create": {"base_s": 2}}}')
    assert p.backoff_for("chat.create").base_s == 2


def test_visibility_timeout_check() -> None:
    policy(max_delay_s=100.0).check_visibility_timeout(3600)
    with pytest.raises(ValueError, match="visibility timeout"):
        policy(max_delay_s=100.0).check_visibility_timeout(100)


# --- the decision as data ---------------------------------------------------------------------------


def test_decisions_round_trip_through_json_by_their_discriminator() -> None:
    adapter: TypeAdapter[Decision] = TypeAdapter(Decision)
    p = policy()
    for d in (
        p.decide(err(409, "request.conflict"), 0, SEND, rng=TOP),
        p.decide(err(401), 0, SEND),
        p.decide(err(400, "active.conversation"), 0, SEND),
        p.decide(err(400, "bad.request"), 0, SEND),
        p.decide(GenesysTimeout("t"), 4, SEND),
    ):
        assert adapter.validate_json(adapter.dump_json(d)) == d


def _read_failure(exc: GenesysError | GenesysTransportError) -> GenesysError | GenesysTransportError:
    exc.changed_nothing = True  # what the client stamps on a failed GET, analytics query or bulk read
    return exc


@pytest.mark.parametrize("exc", [err(503), err(500), GenesysTimeout("read timeout", method="GET", path="/x"),
                                 GenesysConnectionError("reset")])
def test_a_failed_read_leaves_nothing_unknown(exc: GenesysError | GenesysTransportError) -> None:
    """A read hides no effect: the command must not wait for analytics again as if a write were lost."""
    assert retry(policy().decide(exc, 0, SEND, rng=TOP)).outcome_unknown is True
    assert retry(policy().decide(_read_failure(exc), 0, SEND, rng=TOP)).outcome_unknown is False
