"""Every Genesys error code Parley can meet has a specific plain-language hint."""

from __future__ import annotations

import pytest

from parley.hints import (
    HINTS,
    WEBMESSAGING_HINTS,
    hint_for,
    specific_hint,
    status_hint,
    webmessaging_hint_for,
)
from tests.support.contract import error_codes, load

# Codes the reference names outside the contract's x-inin-error-codes (sections 1-6 and 8): operations
# Parley calls that are not in the slice (DELETE /conversations/{id}, PATCH .../communications/{id}),
# the OAuth token endpoint, and spellings the reference quotes.
REFERENCE_CODES = {
    "not.a.user",
    "not.a.client",
    "communication.state.required",
    "too.many.requests",
    "conversation.error.conversation.not.found",
    "chat.error.service.unavailable",
    "origin.not.allowed",
    "session.expired",
    "session.not.found",
    "active.conversation",
    "existing.conversation",
    "organization.outbound.usage.limit.exceeded",
    "conversation.message.limit.exceeded",
    "media.too.large",
    "chat.error.not.found",
    "chat.error.invalid.queue",
    "credentials.expired",
    "app.not.authorized.for.scope",
}

# Web Messaging guest websocket codes (reference/genesys-websockets.md, "Error codes").
WEBMESSAGING_CODES = {400, 401, 403, 404, 408, 409, 429, 4000, 4001, 4002, 4003, 4004, 4005, 4006, 4007,
                      4008, 4009, 4010, 4011, 4013, 4017, 4020, 4029, 4102, 5000}


def contract_codes() -> set[tuple[int, str]]:
    """(status, code) for every x-inin-error-code of every operation in the slice Parley uses."""
    out: set[tuple[int, str]] = set()
    for ops in load()["paths"].values():
        for op in ops.values():
            for status, response in op.get("responses", {}).items():
                out.update((int(status), code) for code in response.get("x-inin-error-codes") or {})
    return out


def test_the_contract_slice_is_read() -> None:
    codes = contract_codes()
    assert len(codes) > 80
    assert "active.conversation" in error_codes("POST", "/api/v2/conversations/messages/agentless")["400"]
    assert (409, "organization.outbound.usage.limit.exceeded") in codes


@pytest.mark.parametrize(("status", "code"), sorted(contract_codes()))
def test_every_contract_code_has_a_specific_hint(status: int, code: str) -> None:
    hint = specific_hint(code)
    assert hint is not None, f"no hint for {status} {code}"
    assert hint_for(status, code) == hint
    assert hint != status_hint(status)


@pytest.mark.parametrize("code", sorted(REFERENCE_CODES))
def test_every_code_named_in_the_reference_has_a_specific_hint(code: str) -> None:
    assert specific_hint(code) is not None


@pytest.mark.parametrize("code", sorted(WEBMESSAGING_CODES))
def test_every_webmessaging_guest_code_has_a_hint(code: int) -> None:
    assert code in WEBMESSAGING_HINTS
    assert webmessaging_hint_for(code) == WEBMESSAGING_HINTS[code]


def test_hints_answer_the_forum_threads() -> None:
    assert "useExistingActiveConversation" in hint_for(400, "active.conversation")
    assert "PATCH state=disconnected" in hint_for(400, "not.a.user")
    third_party = hint_for(404, "chat.error.not.found")
    assert "routing only" in third_party
    assert "roomId NONE" in third_party
    assert "NAME" in hint_for(400, "chat.error.invalid.queue")
    assert "websocket" in hint_for(400, "chat.error.conversation.state")
    assert "conversation:cobrowse:add" in hint_for(403, "missing.any.permissions")
    assert "read-only" in webmessaging_hint_for(409)
    assert "4096 bytes" in webmessaging_hint_for(4011)


def test_journey_context_codes_name_the_missing_part() -> None:
    hint = hint_for(400, "chat.error.notnull.createconversationrequest.journeycontext.customer.customerid")
    assert "`customer.customerid`" in hint


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, "not retried"),
        (401, "refreshes"),
        (403, "permission"),
        (404, "does not exist"),
        (409, "retries"),
        (418, "no specific advice"),
        (429, "Retry-After"),
        (500, "checks the conversation"),
        (599, "checks the conversation"),
        (302, "unexpected status"),
    ],
)
def test_unknown_codes_fall_back_by_status(status: int, expected: str) -> None:
    assert expected in hint_for(status, "some.code.parley.never.saw")
    assert hint_for(status, "") == status_hint(status)


def test_unknown_webmessaging_code_still_gets_advice() -> None:
    assert "no specific advice" in webmessaging_hint_for(4999)


def test_hints_are_substantial_and_never_empty() -> None:
    for code, hint in HINTS.items():
        assert len(hint) >= 40, code
        assert hint.endswith("."), code
        assert hint == hint.strip(), code
    for code, hint in WEBMESSAGING_HINTS.items():
        assert len(hint) >= 25, code


def test_hint_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        HINTS["bad.request"] = "x"  # type: ignore[index]


def test_hints_for_a_real_orgs_day_one_rules() -> None:
    """Issue 13: bad credentials (400 invalid_client), mandatory wrap-up, revoking an expired guest JWT."""
    assert "PARLEY_GENESYS_CLIENT_SECRET" in hint_for(400, "invalid_client")
    assert "Not retried" in hint_for(400, "invalid_client")
    assert "`wrapup`" in hint_for(400, "conversation.error.wrapup.code.required")
    assert "`wrapup`" in hint_for(400, "conversation.error.wrapup.cannot.skip")
    assert "nothing is left to revoke" in hint_for(400, "credentials.expired")
