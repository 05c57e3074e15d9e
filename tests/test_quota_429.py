"""A 429 whose Retry-After is hours (a used-up daily quota) fails its command at once with a hint, and does not
pause the other commands; a rate limit's short Retry-After is still waited out (issue 14.4)."""

from __future__ import annotations

import json

import fakeredis
import pytest
from pydantic import SecretStr

import tasks.commands  # noqa: F401 - registers the real handlers first, so the test's fake replaces them
from genesys.client import GenesysClient
from genesys.errors import GenesysError, RateLimitInfo
from genesys.keys import ClientKeys
from genesys.regions import resolve
from parley.records import Records, State
from parley.settings import Settings
from schemas.validation import parse_command
from tasks.context import HANDLERS
from tasks.dispatch import CommandRef
from tasks.retry_policy import Permanent, Retry, RetryPolicy
from tasks.runner import Runner
from tests.support.events import read_events
from tests.support.genesys_mock import FakeGenesys, error
from tests.test_schemas import VALID

DAY_S = 86_400.0


def too_many(retry_after_s: float, status: int = 429) -> GenesysError:
    return GenesysError(status=status, code="too.many.requests.retry.after", rate_limit=RateLimitInfo(retry_after_s))


def test_a_retry_after_beyond_the_cap_is_a_quota_and_fails_at_once_with_its_hint() -> None:
    decision = RetryPolicy(retry_after_max_s=600).decide(too_many(DAY_S), 0, "message.send")
    assert isinstance(decision, Permanent)
    assert decision.reason == ("429 too.many.requests.retry.after; Retry-After 86400 s is beyond the 600 s Parley "
                               "waits (a quota, not a rate limit)")
    assert decision.hint is not None and "quota" in decision.hint
    assert "86400 s" in decision.hint and "PARLEY_RETRY_AFTER_MAX_S (600 s)" in decision.hint


@pytest.mark.parametrize("retry_after_s", [1.0, 59.0, 600.0])
def test_a_retry_after_up_to_the_cap_is_waited_out(retry_after_s: float) -> None:
    decision = RetryPolicy(retry_after_max_s=600, max_delay_s=700).decide(too_many(retry_after_s), 0, "message.send")
    assert isinstance(decision, Retry) and decision.delay_s >= retry_after_s


def test_a_long_retry_after_on_a_5xx_is_not_a_quota() -> None:
    # A 503 may have applied the change (outcome unknown): failing it for good is not the quota rule's call.
    assert isinstance(RetryPolicy(retry_after_max_s=600).decide(too_many(DAY_S, status=503), 0, "x"), Retry)


def test_the_setting_reaches_the_policy() -> None:
    from tasks.runner import policy_from

    assert policy_from(Settings(redis_url="redis://unused", retry_after_max_s=42)).retry_after_max_s == 42


# --- the Genesys client: only a rate limit pauses the fleet -------------------------------------------------

SETTINGS = Settings(genesys_region="eu_west_1", genesys_client_id="client-1",
                    genesys_client_secret=SecretStr("secret-1"), retry_after_max_s=600)
PAUSE = ClientKeys.for_client(resolve(SETTINGS).login_url, "client-1").pause


@pytest.mark.parametrize(("retry_after", "paused"), [("12", True), ("86400", False)])
def test_only_a_retry_after_within_the_cap_pauses_every_command(retry_after: str, paused: bool) -> None:
    fake, redis_client = FakeGenesys(), fakeredis.FakeRedis()
    fake.queue("GET", "/api/v2/conversations/{id}",
               error(429, "too.many.requests.retry.after", "limit", headers={"Retry-After": retry_after}))
    with pytest.raises(GenesysError) as caught:
        GenesysClient(SETTINGS, redis_client, transport=fake.transport()).get_conversation("conv-1")
    assert caught.value.retry_after_s == float(retry_after)
    assert (redis_client.pttl(PAUSE) > 0) is paused


# --- the runner: the command fails after one attempt, with the quota hint ---------------------------------


def test_a_command_refused_for_a_day_fails_on_its_first_attempt_with_the_quota_hint() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    settings = Settings(redis_url="redis://unused", retry_after_max_s=600)
    raw = json.dumps(VALID["cobrowse.start"])
    command = parse_command(raw)
    claim = Records(client, settings).claim(command, "cmd-quota", raw, "1-0")

    def quota_used_up(ctx: object, command: object) -> None:
        raise too_many(DAY_S)

    saved, HANDLERS["cobrowse.start"] = HANDLERS["cobrowse.start"], quota_used_up
    try:
        outcome = Runner(client, settings).run(CommandRef(command_id=claim.command_id, type=command.type,
                                                          org=command.org, idempotency_key=command.idempotency_key))
    finally:
        HANDLERS["cobrowse.start"] = saved
    assert outcome.state is State.failed
    [failed] = [e for e in read_events(client) if e["type"] == "command.failed"]
    assert failed["attempts"] == 1 and "Retry-After 86400 s" in failed["reason"]
    assert failed["hint"].startswith("Genesys asked Parley to wait 86400 s before trying again")
