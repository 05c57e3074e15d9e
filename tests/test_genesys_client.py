"""GenesysClient against a scripted Genesys (httpx.MockTransport): every operation's request is what
the contract says, every failure becomes a typed error."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import fakeredis
import httpx
import jsonschema
import pytest
from pydantic import BaseModel, SecretStr

from genesys import models as m
from genesys import operations as ops
from genesys.client import AsyncGenesysClient, GenesysClient
from genesys.errors import GenesysConnectionError, GenesysError, GenesysInvalidResponse, GenesysTimeout
from genesys.keys import ClientKeys
from genesys.regions import resolve
from genesys.wire import parse_retry_after, rate_limit_info
from parley.settings import Settings
from tests.support.contract import load, validate_request
from tests.support.genesys_mock import FakeGenesys, error

SETTINGS = Settings(
    genesys_region="eu_west_1", genesys_client_id="client-1", genesys_client_secret=SecretStr("secret-1")
)
KEYS = ClientKeys.for_client(resolve(SETTINGS).login_url, "client-1")
DEPLOYMENT = "e1b6f3a8-52c9-4d7e-8a10-b4c3d2e5f607"
JWT = "guest.jwt.value"


@pytest.fixture
def fake() -> FakeGenesys:
    return FakeGenesys()


@pytest.fixture
def client(fake: FakeGenesys) -> GenesysClient:
    return GenesysClient(SETTINGS, fakeredis.FakeRedis(), transport=fake.transport())


# ================================================================================================
# Every operation: method, path, query, auth and body as the contract says
# ================================================================================================
@dataclass(frozen=True)
class Case:
    name: str
    call: Callable[[GenesysClient], Any]
    method: str
    path: str
    auth: str  # "oauth" | "guest" | "none"
    result: type[BaseModel] | None
    params: dict[str, str] = field(default_factory=dict)


WRAPUP = m.MediaParticipantRequest(
    state="disconnected", wrapup=m.WrapupInput(code="wc-1", name="Resolved", notes="ok", duration_seconds=5)
)
CASES = [
    Case(
        "send_agentless",
        lambda c: c.send_agentless(
            from_address=DEPLOYMENT,
            messenger_type="webmessaging",
            external_contact_id="ec-1",
            text="Your parcel is on its way",
            use_existing_active_conversation=True,
        ),
        "POST",
        "/api/v2/conversations/messages/agentless",
        "oauth",
        m.SendAgentlessOutboundMessageResponse,
    ),
    Case(
        "send_agentless",
        lambda c: c.send_agentless(
            from_address="+13175550100", messenger_type="sms", to_address="+13175550199", text="hi"
        ),
        "POST",
        "/api/v2/conversations/messages/agentless",
        "oauth",
        m.SendAgentlessOutboundMessageResponse,
    ),
    Case(
        "get_conversation",
        lambda c: c.get_conversation("conv-1"),
        "GET",
        "/api/v2/conversations/conv-1",
        "oauth",
        m.Conversation,
    ),
    Case(
        "get_message_conversation",
        lambda c: c.get_message_conversation("conv-1"),
        "GET",
        "/api/v2/conversations/messages/conv-1",
        "oauth",
        m.MessageConversation,
    ),
    Case(
        "patch_message_conversation",
        lambda c: c.patch_message_conversation("conv-1"),
        "PATCH",
        "/api/v2/conversations/messages/conv-1",
        "oauth",
        m.Conversation,
    ),
    Case(
        "patch_message_participant",
        lambda c: c.patch_message_participant("conv-1", "part-1"),
        "PATCH",
        "/api/v2/conversations/messages/conv-1/participants/part-1",
        "oauth",
        None,
    ),
    Case(
        "patch_message_participant",
        lambda c: c.patch_message_participant("conv-1", "part-1", WRAPUP),
        "PATCH",
        "/api/v2/conversations/messages/conv-1/participants/part-1",
        "oauth",
        None,
    ),
    Case(
        "patch_conversation_participant",
        lambda c: c.patch_conversation_participant("conv-1", "part-1", WRAPUP),
        "PATCH",
        "/api/v2/conversations/conv-1/participants/part-1",
        "oauth",
        None,
    ),
    Case(
        "disconnect_conversation",
        lambda c: c.disconnect_conversation("conv-1"),
        "POST",
        "/api/v2/conversations/conv-1/disconnect",
        "oauth",
        None,
    ),
    Case(
        "delete_conversation",
        lambda c: c.delete_conversation("conv-1"),
        "DELETE",
        "/api/v2/conversations/conv-1",
        "oauth",
        None,
    ),
    Case(
        "start_cobrowse",
        lambda c: c.start_cobrowse("conv-1"),
        "POST",
        "/api/v2/conversations/conv-1/cobrowse",
        "oauth",
        m.CobrowseWebMessagingSession,
    ),
    Case(
        "get_cobrowse_session",
        lambda c: c.get_cobrowse_session("conv-1"),
        "GET",
        "/api/v2/conversations/cobrowsesessions/conv-1",
        "oauth",
        m.CobrowseConversation,
    ),
    Case(
        "query_conversation_details",
        lambda c: c.query_conversation_details(
            m.ConversationQuery.customer_conversations(
                messenger_type="webmessaging",
                recipient="ec-1",
                since=datetime(2026, 5, 14, 9, tzinfo=UTC),
                until=datetime(2026, 5, 14, 10, tzinfo=UTC),
                from_address=DEPLOYMENT,
                live_only=True,
            )
        ),
        "POST",
        "/api/v2/analytics/conversations/details/query",
        "oauth",
        m.AnalyticsConversationQueryResponse,
    ),
    Case(
        "get_message",
        lambda c: c.get_message("conv-1", "msg-1"),
        "GET",
        "/api/v2/conversations/messages/conv-1/messages/msg-1",
        "oauth",
        m.MessageData,
    ),
    Case(
        "get_messages_bulk",
        lambda c: c.get_messages_bulk("conv-1", ["msg-1", "msg-2"]),
        "POST",
        "/api/v2/conversations/messages/conv-1/messages/bulk",
        "oauth",
        m.TextMessageListing,
    ),
    Case(
        "patch_cobrowse_session",
        lambda c: c.patch_cobrowse_session("conv-1"),
        "PATCH",
        "/api/v2/conversations/cobrowsesessions/conv-1",
        "oauth",
        m.Conversation,
    ),
    Case(
        "patch_cobrowse_participant",
        lambda c: c.patch_cobrowse_participant("conv-1", "part-1"),
        "PATCH",
        "/api/v2/conversations/cobrowsesessions/conv-1/participants/part-1",
        "oauth",
        None,
    ),
    Case(
        "create_third_party_chat",
        lambda c: c.create_third_party_chat(
            m.CreateWebChatRequest(
                queue_id="q-1",
                provider="Acme CRM",
                customer_name="Ada",
                attributes={"ticket": "42"},
                priority=3,
            )
        ),
        "POST",
        "/api/v2/conversations/chats",
        "oauth",
        m.ChatConversation,
    ),
    Case(
        "create_guest_chat",
        lambda c: c.create_guest_chat(
            m.CreateWebChatConversationRequest(
                organization_id="org-1",
                deployment_id="dep-1",
                routing_target=m.WebChatRoutingTarget(target_address="Support"),
                member_info=m.GuestMemberInfo(display_name="Ada", custom_fields={"crm": "1"}),
            )
        ),
        "POST",
        "/api/v2/webchat/guest/conversations",
        "none",
        m.CreateWebChatConversationResponse,
    ),
    Case(
        "send_guest_chat_message",
        lambda c: c.send_guest_chat_message("conv-1", "member-1", "hello", jwt=JWT),
        "POST",
        "/api/v2/webchat/guest/conversations/conv-1/members/member-1/messages",
        "guest",
        m.WebChatMessage,
    ),
    Case(
        "send_guest_chat_typing",
        lambda c: c.send_guest_chat_typing("conv-1", "member-1", jwt=JWT),
        "POST",
        "/api/v2/webchat/guest/conversations/conv-1/members/member-1/typing",
        "guest",
        m.WebChatTyping,
    ),
    Case(
        "get_guest_chat_members",
        lambda c: c.get_guest_chat_members(
            "conv-1", jwt=JWT, page_size=25, page_number=2, exclude_disconnected_members=True
        ),
        "GET",
        "/api/v2/webchat/guest/conversations/conv-1/members",
        "guest",
        m.WebChatMemberInfoEntityList,
        {"pageSize": "25", "pageNumber": "2", "excludeDisconnectedMembers": "true"},
    ),
    Case(
        "get_guest_chat_member",
        lambda c: c.get_guest_chat_member("conv-1", "member-1", jwt=JWT),
        "GET",
        "/api/v2/webchat/guest/conversations/conv-1/members/member-1",
        "guest",
        m.WebChatMemberInfo,
    ),
    Case(
        "get_guest_chat_messages",
        lambda c: c.get_guest_chat_messages(
            "conv-1", jwt=JWT, after="wm-1", before="wm-9", sort_order="descending", max_results=50
        ),
        "GET",
        "/api/v2/webchat/guest/conversations/conv-1/messages",
        "guest",
        m.WebChatMessageEntityList,
        {"after": "wm-1", "before": "wm-9", "sortOrder": "descending", "maxResults": "50"},
    ),
    Case(
        "get_guest_chat_message",
        lambda c: c.get_guest_chat_message("conv-1", "wm-1", jwt=JWT),
        "GET",
        "/api/v2/webchat/guest/conversations/conv-1/messages/wm-1",
        "guest",
        m.WebChatMessage,
    ),
    Case(
        "leave_guest_chat",
        lambda c: c.leave_guest_chat("conv-1", "member-1", jwt=JWT),
        "DELETE",
        "/api/v2/webchat/guest/conversations/conv-1/members/member-1",
        "guest",
        None,
    ),
    Case(
        "get_webmessaging_messages",
        lambda c: c.get_webmessaging_messages(jwt=JWT, page_size=25, page_number=1),
        "GET",
        "/api/v2/webmessaging/messages",
        "guest",
        m.WebMessagingMessageEntityList,
        {"pageSize": "25", "pageNumber": "1"},
    ),
]
# The contract's Conversation requires participants/startTime; Genesys takes (and its SDK sends) state only.
STATE_ONLY_PATCHES = {
    "/api/v2/conversations/messages/{conversationId}",
    "/api/v2/conversations/cobrowsesessions/{conversationId}",
}


def _contract_op(method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    import re

    for template, operations in load()["paths"].items():
        if re.match("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$", path) and method.lower() in operations:
            return template, operations[method.lower()]
    return None


def test_every_operation_has_a_case() -> None:
    public = {
        name
        for name, fn in inspect.getmembers(ops, inspect.isfunction)
        if fn.__module__ == ops.__name__ and not name.startswith("_")
    }
    assert public == {case.name for case in CASES}
    assert all(callable(getattr(GenesysClient, name)) for name in public)
    assert all(callable(getattr(AsyncGenesysClient, name)) for name in public)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_request_matches_the_contract(case: Case, client: GenesysClient, fake: FakeGenesys) -> None:
    result = case.call(client)

    sent = fake.api_requests[-1]
    assert (sent.method, sent.path, sent.params) == (case.method, case.path, case.params)
    expected_auth = {"oauth": "Bearer token-1", "guest": f"Bearer {JWT}", "none": None}[case.auth]
    assert sent.authorization == expected_auth
    assert fake.token_requests == (1 if case.auth == "oauth" else 0)
    assert result is None if case.result is None else isinstance(result, case.result)

    found = _contract_op(case.method, case.path)
    if found is None:  # DELETE /api/v2/conversations/{id} exists on Genesys but not in the slice
        assert (case.method, sent.body) == ("DELETE", None)
        return
    template, operation = found
    query = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
    assert set(sent.params) <= query
    if case.method == "PATCH" and template in STATE_ONLY_PATCHES:
        assert sent.body == {"state": "disconnected"}
        with pytest.raises(jsonschema.ValidationError, match="required property"):
            validate_request(case.method, case.path, sent.body)
        return
    validate_request(case.method, case.path, sent.body)


def test_webmessaging_agentless_body(client: GenesysClient, fake: FakeGenesys) -> None:
    client.send_agentless(from_address=DEPLOYMENT, messenger_type="webmessaging", external_contact_id="ec-1", text="hi")
    assert fake.api_requests[-1].body == {
        "fromAddress": DEPLOYMENT,
        "toAddressMessengerType": "webmessaging",
        "externalContactId": "ec-1",
        "textBody": "hi",
        "useExistingActiveConversation": False,
    }


def test_ids_are_percent_encoded(client: GenesysClient, fake: FakeGenesys) -> None:
    client.get_conversation("a/../b")
    assert fake.api_requests[-1].path == "/api/v2/conversations/a%2F..%2Fb"


@pytest.mark.parametrize(
    "bad",
    [
        lambda c: c.send_agentless(from_address=DEPLOYMENT, messenger_type="webmessaging", text="hi"),
        lambda c: c.send_agentless(from_address="+1", messenger_type="sms", text="hi"),
        lambda c: c.get_conversation(""),
        lambda c: c.get_guest_chat_messages("conv-1", jwt=JWT, max_results=101),
    ],
)
def test_invalid_calls_fail_before_sending(
    bad: Callable[[GenesysClient], Any], client: GenesysClient, fake: FakeGenesys
) -> None:
    with pytest.raises(ValueError):
        bad(client)
    assert fake.requests == []


# ================================================================================================
# Errors
# ================================================================================================
def test_400_error_body_becomes_a_genesys_error(client: GenesysClient, fake: FakeGenesys) -> None:
    fake.queue(
        "POST",
        "/api/v2/conversations/messages/agentless",
        error(
            400,
            "active.conversation",
            "An alerting or connected conversation is already in progress.",
            messageParams={"conversationId": "conv-9"},
            headers={
                "inin-ratelimit-count": "12",
                "inin-ratelimit-allowed": "300",
                "inin-ratelimit-reset": "41",
            },
        ),
    )
    with pytest.raises(GenesysError) as caught:
        client.send_agentless(from_address=DEPLOYMENT, messenger_type="webmessaging", external_contact_id="ec")
    e = caught.value
    assert (e.status, e.code) == (400, "active.conversation")
    assert e.message == "An alerting or connected conversation is already in progress."
    assert e.message_params == {"conversationId": "conv-9"}
    assert (e.context_id, e.correlation_id) == ("ctx-1", "ctx-1")
    assert (e.method, e.path) == ("POST", "/api/v2/conversations/messages/agentless")
    assert (e.rate_limit.count, e.rate_limit.allowed, e.rate_limit.reset_s) == (12, 300, 41.0)
    assert e.retry_after_s is None


def test_409_conflict(client: GenesysClient, fake: FakeGenesys) -> None:
    fake.queue("POST", "/api/v2/conversations/{id}/cobrowse", error(409, "request.conflict", "Conflict"))
    with pytest.raises(GenesysError) as caught:
        client.start_cobrowse("conv-1")
    assert (caught.value.status, caught.value.code) == (409, "request.conflict")
    assert len(fake.api_requests) == 1  # no retries in the client: the task policy decides


def test_delete_with_client_credentials_is_not_a_user(client: GenesysClient, fake: FakeGenesys) -> None:
    fake.queue("DELETE", "/api/v2/conversations/{id}", error(400, "not.a.user", "This request requires a user."))
    with pytest.raises(GenesysError) as caught:
        client.delete_conversation("conv-1")
    assert caught.value.code == "not.a.user"


def test_429_with_retry_after_seconds(client: GenesysClient, fake: FakeGenesys) -> None:
    fake.queue(
        "GET",
        "/api/v2/conversations/{id}",
        error(
            429,
            "too.many.requests.retry.after",
            "Rate limit exceeded the maximum. Retry the request in [12] seconds",
            headers={"Retry-After": "12"},
        ),
    )
    with pytest.raises(GenesysError) as caught:
        client.get_conversation("conv-1")
    assert (caught.value.status, caught.value.code, caught.value.retry_after_s) == (
        429,
        "too.many.requests.retry.after",
        12.0,
    )


def test_429_with_retry_after_http_date(client: GenesysClient, fake: FakeGenesys) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    fake.queue(
        "GET",
        "/api/v2/conversations/{id}",
        error(429, "too.many.requests", "legacy", headers={"Retry-After": when}),
    )
    with pytest.raises(GenesysError) as caught:
        client.get_conversation("conv-1")
    assert caught.value.retry_after_s == pytest.approx(30, abs=2)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-4", 0.0),
        ("Wed, 14 May 2026 10:00:30 GMT", 30.0),
        ("Wed, 14 May 2026 09:59:00 GMT", 0.0),  # in the past
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=datetime(2026, 5, 14, 10, 0, 0, tzinfo=UTC)) == seconds


def test_rate_limit_headers_of_any_response() -> None:
    info = rate_limit_info(
        httpx.Headers({"inin-ratelimit-count": "3", "inin-ratelimit-allowed": "300", "inin-ratelimit-reset": "x"})
    )
    assert (info.count, info.allowed, info.reset_s, info.retry_after_s) == (3, 300, None, None)


@pytest.mark.parametrize(
    ("response", "code", "message"),
    [
        (
            error(500, "internal.server.error", "The server encountered an error."),
            "internal.server.error",
            "The server encountered an error.",
        ),
        (
            error(503, "service.unavailable", "Service unavailable"),
            "service.unavailable",
            "Service unavailable",
        ),
        (httpx.Response(502, text="<html>Bad gateway</html>"), "", "Bad Gateway"),
        (httpx.Response(504), "", "Gateway Timeout"),
        (httpx.Response(500, json=["not", "an", "object"]), "", "Internal Server Error"),
        (httpx.Response(500, json={"code": 5}), "", "Internal Server Error"),  # ill-typed ErrorBody
    ],
)
def test_5xx_and_non_json_bodies(
    response: httpx.Response, code: str, message: str, client: GenesysClient, fake: FakeGenesys
) -> None:
    fake.queue("GET", "/api/v2/conversations/messages/{id}", response)
    with pytest.raises(GenesysError) as caught:
        client.get_message_conversation("conv-1")
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        response.status_code,
        code,
        message,
    )


def test_404_on_guest_call(client: GenesysClient, fake: FakeGenesys) -> None:
    fake.queue(
        "GET",
        "/api/v2/webchat/guest/conversations/{id}/messages/{msg}",
        error(404, "chat.error.not.found", "Not found"),
    )
    with pytest.raises(GenesysError) as caught:
        client.get_guest_chat_message("conv-1", "wm-1", jwt=JWT)
    assert (caught.value.status, caught.value.code) == (404, "chat.error.not.found")


def test_guest_401_is_not_retried_with_a_new_oauth_token(client: GenesysClient, fake: FakeGenesys) -> None:
    fake.queue(
        "POST",
        "/api/v2/webchat/guest/conversations/{id}/members/{mid}/messages",
        error(401, "credentials.expired", "expired"),
    )
    with pytest.raises(GenesysError) as caught:
        client.send_guest_chat_message("conv-1", "member-1", "hi", jwt=JWT)
    assert caught.value.status == 401
    assert (len(fake.api_requests), fake.token_requests) == (1, 0)


@pytest.mark.parametrize(
    ("exc", "typed"),
    [
        (httpx.ReadTimeout("read timed out"), GenesysTimeout),
        (httpx.ConnectTimeout("connect timed out"), GenesysTimeout),
        (httpx.WriteTimeout("write timed out"), GenesysTimeout),
        (httpx.PoolTimeout("pool"), GenesysTimeout),
        (httpx.ConnectError("refused"), GenesysConnectionError),
        (httpx.ReadError("reset by peer"), GenesysConnectionError),
        (httpx.RemoteProtocolError("server disconnected"), GenesysConnectionError),
    ],
)
def test_transport_failures_are_typed(
    exc: Exception, typed: type[Exception], client: GenesysClient, fake: FakeGenesys
) -> None:
    fake.queue("POST", "/api/v2/conversations/{id}/disconnect", exc)
    with pytest.raises(typed) as caught:
        client.disconnect_conversation("conv-1")
    assert (caught.value.method, caught.value.path) == ("POST", "/api/v2/conversations/conv-1/disconnect")
    assert isinstance(caught.value.__cause__, httpx.TransportError)


def test_transport_failure_while_fetching_the_token(fake: FakeGenesys) -> None:
    r = fakeredis.FakeRedis()
    fake.queue("POST", "/oauth/token", httpx.ConnectTimeout("login down"))
    with pytest.raises(GenesysTimeout):
        GenesysClient(SETTINGS, r, transport=fake.transport()).get_conversation("conv-1")
    assert r.exists(KEYS.token_lock) == 0  # the next caller can fetch at once
    assert fake.api_requests == []


def test_unreadable_success_is_an_invalid_response(client: GenesysClient, fake: FakeGenesys) -> None:
    fake.queue("POST", "/api/v2/conversations/{id}/cobrowse", httpx.Response(200, json={"joinCode": 123}))
    with pytest.raises(GenesysInvalidResponse) as caught:
        client.start_cobrowse("conv-1")
    assert (caught.value.status, caught.value.path) == (200, "/api/v2/conversations/conv-1/cobrowse")


def test_real_timeouts_come_from_settings() -> None:
    settings = Settings(genesys_connect_timeout_s=1.5, genesys_read_timeout_s=7)
    c = GenesysClient(settings, fakeredis.FakeRedis())
    timeout = c._http.timeout
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (1.5, 7, 7, 1.5)


# ================================================================================================
# Logging: method, path, status, correlation id; never bodies, text or tokens
# ================================================================================================
def test_logs_carry_no_bodies_text_or_tokens(
    client: GenesysClient, fake: FakeGenesys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client.send_agentless(
        from_address=DEPLOYMENT,
        messenger_type="webmessaging",
        external_contact_id="ec-1",
        text="CUSTOMER-SECRET-TEXT",
    )
    client.send_guest_chat_message("conv-1", "member-1", "GUEST-SECRET-TEXT", jwt=JWT)
    fake.queue(
        "GET",
        "/api/v2/conversations/{id}",
        error(400, "bad.request", "bad", headers={"ININ-Correlation-Id": "corr-9"}),
    )
    with pytest.raises(GenesysError):
        client.get_conversation("conv-1")
    for secret in ("CUSTOMER-SECRET-TEXT", "GUEST-SECRET-TEXT", JWT, "token-1", "secret-1"):
        assert secret not in caplog.text
    assert "GET /api/v2/conversations/conv-1 -> 400 corr=corr-9" in caplog.text


# ================================================================================================
# Async client: same plans, asyncio I/O
# ================================================================================================
def test_async_client_operations_and_errors() -> None:
    fake = FakeGenesys()
    fake.queue("GET", "/api/v2/conversations/{id}", httpx.ReadTimeout("slow"))
    fake.queue("POST", "/api/v2/conversations/{id}/cobrowse", error(409, "request.conflict", "Conflict"))

    async def main() -> None:
        async with AsyncGenesysClient(SETTINGS, fakeredis.FakeAsyncRedis(), transport=fake.transport()) as c:
            sent = await c.send_agentless(
                from_address=DEPLOYMENT, messenger_type="webmessaging", external_contact_id="ec-1", text="x"
            )
            assert sent.conversation_id == "conv-1"
            created = await c.create_guest_chat(
                m.CreateWebChatConversationRequest(
                    organization_id="o",
                    deployment_id="d",
                    routing_target=m.WebChatRoutingTarget(target_address="Support"),
                    member_info=m.GuestMemberInfo(display_name="Ada"),
                )
            )
            assert created.jwt == "guest.jwt.value"
            assert (await c.get_guest_chat_messages("conv-1", jwt=created.jwt)).entities[0].body == "hello"
            with pytest.raises(GenesysTimeout):
                await c.get_conversation("conv-1")
            with pytest.raises(GenesysError, match=r"request\.conflict"):
                await c.start_cobrowse("conv-1")

    asyncio.run(main())
    assert fake.token_requests == 1
    assert [r.authorization for r in fake.requests if r.path.startswith("/api/v2/webchat")] == [
        None,
        "Bearer guest.jwt.value",
    ]


def test_async_401_refreshes_once() -> None:
    fake = FakeGenesys()

    async def main() -> None:
        async with AsyncGenesysClient(SETTINGS, fakeredis.FakeAsyncRedis(), transport=fake.transport()) as c:
            await c.get_conversation("conv-1")
            fake.revoke_all()
            await c.get_conversation("conv-1")

    asyncio.run(main())
    assert fake.token_requests == 2
    assert [r.authorization for r in fake.api_requests] == [
        "Bearer token-1",
        "Bearer token-1",
        "Bearer token-2",
    ]
