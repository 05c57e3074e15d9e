"""A wrong hint is a bug (issue 14.3): each hint says what is true where it can actually fire.

A hint reaches a producer only in ``command.failed``: for a transient code that means every attempt got it;
for a 401 it means a fresh token was refused too; a 404 about a conversation Parley knows ended says so.
"""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest

import tasks.commands  # noqa: F401 - registers the real handlers first, so the test's fakes replace them
from genesys.errors import GenesysError
from genesys.models import Conversation
from parley.hints import CONVERSATION_ENDED, HINTS, hint_for, status_hint
from parley.records import Records, State
from parley.settings import Settings
from parley.state_cache import StateCache
from schemas.commands import CobrowseStart, ConversationEnd
from schemas.validation import parse_command
from tasks.context import HANDLERS, ExecutionContext, Refused
from tasks.dispatch import CommandRef
from tasks.handlers import cobrowse, conversation_end
from tasks.runner import Runner
from tests.support.events import read_events

CID = "6f1c2a9e-3b7d-4c55-9a0e-2f4b8d1e7c30"
TRANSIENT = ["client.timeout", "request.conflict", "too.many.requests.retry.after", "too.many.requests",
             "internal.server.error", "service.unavailable", "request.timeout", "chat.error.service.timeout",
             "conversation.participant.update.failed", "authentication.request.timeout"]


# --- the texts ---------------------------------------------------------------------------------------------


def test_no_hint_points_at_invented_routes() -> None:
    """Parley only calls real routes: a 404 it gets is a wrong id or a gone object, never a wrong route."""
    for code, hint in HINTS.items():
        assert "invent" not in hint and "route that" not in hint and "or route" not in hint, code
    assert "route" not in status_hint(404) and "route" not in hint_for(404, "not.found")


@pytest.mark.parametrize("code", TRANSIENT)
def test_a_transient_codes_hint_says_every_attempt_got_it(code: str) -> None:
    hint = HINTS[code]
    assert ("every attempt" in hint and "PARLEY_RETRY_MAX_ATTEMPTS" in hint) or "every attempt was limited" in hint


@pytest.mark.parametrize("code", ["authentication.required", "bad.credentials", "credentials.expired"])
def test_a_401_hint_says_a_fresh_token_was_refused_too(code: str) -> None:
    assert "fresh" in HINTS[code] and "if it persists" not in HINTS[code]


def test_an_unknown_conversation_is_not_said_to_count_as_ended() -> None:
    # conversation.end of an unknown conversation fails (tests/test_commands_integration.py); it is not "ended".
    assert "already ended" not in HINTS["conversation.error.conversation.not.found"]


def test_a_failed_read_is_not_said_to_have_applied_a_change() -> None:
    assert "applied" not in HINTS["general.internal.server.error"]
    assert "changes nothing" in HINTS["general.internal.server.error"]


def test_an_unknown_outcome_hint_says_to_look_before_submitting_again() -> None:
    assert "look in Genesys before submitting it again" in hint_for(500, "internal.server.error")


def test_a_rate_limit_hint_names_the_cap_on_the_wait() -> None:
    assert "PARLEY_RETRY_AFTER_MAX_S" in hint_for(429, "too.many.requests.retry.after")


# --- a 404 about a conversation Parley knows ended ----------------------------------------------------------


def run_failing(client: Any, command_type: str, exc: Exception) -> dict[str, Any]:
    """Run one command whose handler raises ``exc``; its command.failed event."""
    body = {"type": command_type, "idempotency_key": "k-" + command_type, "conversation_id": CID}
    raw = json.dumps(body)
    command = parse_command(raw)
    settings = Settings(redis_url="redis://unused")
    claim = Records(client, settings).claim(command, "cmd-" + command_type, raw, "1-0")

    def fails(ctx: ExecutionContext, command: object) -> None:
        raise exc

    saved, HANDLERS[command_type] = HANDLERS[command_type], fails
    try:
        outcome = Runner(client, settings).run(CommandRef(command_id=claim.command_id, type=command.type,
                                                          org=command.org, idempotency_key=command.idempotency_key))
    finally:
        HANDLERS[command_type] = saved
    assert outcome.state is State.failed
    [failed] = [e for e in read_events(client) if e["type"] == "command.failed"]
    return failed


def test_a_404_about_a_conversation_parley_saw_end_says_it_ended() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    StateCache(client).mark_ended(CID)
    failed = run_failing(client, "cobrowse.end", GenesysError(status=404, code="not.found"))
    assert failed["hint"] == CONVERSATION_ENDED
    assert failed["hint"].startswith("The conversation ended before this command ran")


def test_a_404_about_a_conversation_not_known_to_have_ended_keeps_the_codes_hint() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    failed = run_failing(client, "cobrowse.end", GenesysError(status=404, code="not.found"))
    assert failed["hint"] == hint_for(404, "not.found")


def test_another_status_about_an_ended_conversation_keeps_the_codes_hint() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    StateCache(client).mark_ended(CID)
    failed = run_failing(client, "cobrowse.end", GenesysError(status=403, code="missing.any.permissions"))
    assert failed["hint"] == hint_for(403, "missing.any.permissions")


# --- the handlers: conversation.end remembers, cobrowse.start asks Genesys -----------------------------------


def conversation(ended: bool) -> Conversation:
    state = "disconnected" if ended else "connected"
    return Conversation.model_validate({
        "id": CID, "startTime": "2026-11-21T10:00:00Z", **({"endTime": "2026-11-21T10:05:00Z"} if ended else {}),
        "participants": [{"id": "p1", "purpose": "customer", "messages": [{"id": "m1", "state": state}]}]})


class Genesys:
    """A cobrowse start answered 404; the conversation reads as ``read`` (a Conversation, or an error)."""

    def __init__(self, read: Conversation | GenesysError) -> None:
        self.read = read

    def start_cobrowse(self, cid: str) -> Any:
        raise GenesysError(status=404, code="not.found")

    def get_conversation(self, cid: str) -> Conversation:
        if isinstance(self.read, GenesysError):
            raise self.read
        return self.read

    def patch_message_conversation(self, cid: str) -> Any:
        return None


def context(client: Any, genesys: object) -> ExecutionContext:
    return ExecutionContext(settings=Settings(redis_url="redis://unused"), redis=client, command_id="c", attempt=1,
                            recovering=False, genesys_factory=lambda: genesys)  # type: ignore[arg-type,return-value]


START = CobrowseStart(type="cobrowse.start", idempotency_key="k", conversation_id=CID)


def test_a_start_answered_404_in_a_conversation_that_reads_ended_says_so_and_remembers() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    with pytest.raises(Refused) as refused:
        cobrowse.start_cobrowse(context(client, Genesys(conversation(ended=True))), START)
    assert refused.value.reason == f"conversation {CID} ended before this command ran"
    assert refused.value.hint == CONVERSATION_ENDED
    assert StateCache(client).ended(CID)


@pytest.mark.parametrize("read", [conversation(ended=False), GenesysError(status=404, code="not.found")])
def test_a_start_answered_404_otherwise_fails_with_genesys_answer(read: Conversation | GenesysError) -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    with pytest.raises(GenesysError) as raised:
        cobrowse.start_cobrowse(context(client, Genesys(read)), START)
    assert raised.value.status == 404 and not StateCache(client).ended(CID)


def test_a_conversation_end_remembers_the_conversation_ended_with_its_success() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    ctx = context(client, Genesys(conversation(ended=True)))
    conversation_end.end_conversation(ctx, ConversationEnd(type="conversation.end", idempotency_key="k",
                                                           conversation_id=CID))
    assert not StateCache(client).ended(CID)  # staged: it commits with the command's success
    pipe = client.pipeline(transaction=True)
    for write in ctx.success_writes():
        write(pipe)
    pipe.execute()
    assert StateCache(client).ended(CID)
