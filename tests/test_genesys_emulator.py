"""The client against the Genesys Cloud emulator, in process: AsyncGenesysClient over ASGI, every
request and answer held to the contract. (Over a real socket: test_genesys_loopback.py.)"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette

from emulator.fixtures import SEED
from genesys import models as m
from genesys.client import AsyncGenesysClient
from genesys.errors import GenesysConnectionError, GenesysError
from genesys.keys import ClientKeys
from parley.settings import Settings
from tests.support.contract import validate_request
from tests.support.emulator_server import _Transport, check_contract

pytestmark = pytest.mark.anyio

BASE = "http://emulator.test"
SETTINGS = Settings(
    genesys_api_url=BASE,
    genesys_client_id=SEED.client_id,
    genesys_client_secret=SecretStr(SEED.client_secret),
    genesys_rate_limit_per_minute=300,
)
KEYS = ClientKeys.for_client(BASE, SEED.client_id)
WEBMESSAGING = SEED.deployments[0].id
GUESTCHAT = next(d.id for d in SEED.deployments if d.type == "guestchat")
CONTACT = SEED.external_contacts[0].id
QUEUE = SEED.queues[0]
# Genesys takes {"state": "disconnected"} although the contract's Conversation requires more.
STATE_ONLY = re.compile(r"^/api/v2/conversations/(messages|cobrowsesessions)/[^/]+$")


class ContractTransport(httpx.AsyncBaseTransport):
    """The emulator in process; what the client sends and what comes back are held to the contract."""

    def __init__(self, app: Starlette) -> None:
        self._inner = _Transport(app)
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.path.startswith("/api/") and request.content:
            body: Any = httpx.Response(200, content=request.content).json()
            if not (request.method == "PATCH" and STATE_ONLY.match(request.url.path)):
                validate_request(request.method, request.url.path, body)
        response = await self._inner.handle_async_request(request)
        response.request = request
        await check_contract(response)
        return response


@pytest.fixture
def redis_fake() -> fakeredis.FakeAsyncRedis:
    return fakeredis.FakeAsyncRedis()


@pytest.fixture
async def genesys(emulator_app: Starlette, redis_fake: fakeredis.FakeAsyncRedis) -> AsyncIterator[AsyncGenesysClient]:
    async with AsyncGenesysClient(SETTINGS, redis_fake, transport=ContractTransport(emulator_app)) as client:
        yield client


async def ledger(emu_client: httpx.AsyncClient, conversation_id: str | None = None) -> list[str]:
    params = {"conversation_id": conversation_id} if conversation_id else {}
    entries = (await emu_client.get("/__emulator/ledger", params=params)).json()["entries"]
    return [entry["kind"] for entry in entries]


async def send(genesys: AsyncGenesysClient, *, existing: bool = False) -> m.SendAgentlessOutboundMessageResponse:
    return await genesys.send_agentless(
        from_address=WEBMESSAGING,
        messenger_type="webmessaging",
        external_contact_id=CONTACT,
        text="Your parcel ships today.",
        use_existing_active_conversation=existing,
    )


# --- Scenario 1: proactive message into a live web messaging session ----------------------------
async def test_agentless_send_then_active_conversation_then_reuse(
    genesys: AsyncGenesysClient, emu_client: httpx.AsyncClient
) -> None:
    first = await send(genesys)
    assert first.conversation_id and first.message is not None and first.message.status == "sent"
    with pytest.raises(GenesysError) as caught:
        await send(genesys)
    assert (caught.value.status, caught.value.code) == (400, "active.conversation")
    assert caught.value.correlation_id and caught.value.correlation_id == caught.value.context_id
    again = await send(genesys, existing=True)
    assert again.conversation_id == first.conversation_id
    assert await ledger(emu_client, first.conversation_id) == [
        "conversation.created",
        "message.sent",
        "message.sent",
    ]


async def test_conversation_views_carry_communication_ids(genesys: AsyncGenesysClient) -> None:
    sent = await send(genesys)
    assert sent.conversation_id
    conversation = await genesys.get_conversation(sent.conversation_id)
    purposes = {p.purpose for p in conversation.participants}
    assert {"customer", "api"} <= purposes
    assert all(p.messages and p.messages[0].id for p in conversation.participants)
    media = await genesys.get_message_conversation(sent.conversation_id)
    assert {p.state for p in media.participants} == {"connected"}


# --- Scenario 3: end a web messaging conversation from the backend -------------------------------
async def test_patch_disconnects_and_the_state_reads_disconnected(
    genesys: AsyncGenesysClient, emu_client: httpx.AsyncClient
) -> None:
    sent = await send(genesys)
    assert sent.conversation_id
    ended = await genesys.patch_message_conversation(sent.conversation_id)
    assert ended.end_time is not None
    media = await genesys.get_message_conversation(sent.conversation_id)
    assert {p.state for p in media.participants} == {"disconnected"}
    assert (await ledger(emu_client, sent.conversation_id))[-1] == "conversation.disconnected"


async def test_participant_patch_disconnect_and_delete(genesys: AsyncGenesysClient) -> None:
    sent = await send(genesys)
    assert sent.conversation_id
    conversation = await genesys.get_conversation(sent.conversation_id)
    customer = next(p for p in conversation.participants if p.purpose == "customer")
    assert customer.id
    assert await genesys.patch_message_participant(sent.conversation_id, customer.id) is None
    with pytest.raises(GenesysError) as caught:
        await genesys.delete_conversation(sent.conversation_id)
    assert (caught.value.status, caught.value.code) == (400, "not.a.user")
    assert await genesys.disconnect_conversation(sent.conversation_id) is None
    assert (await genesys.get_conversation(sent.conversation_id)).end_time is not None


# --- Scenario 4: cobrowse ------------------------------------------------------------------------
async def test_cobrowse_start_read_and_end(genesys: AsyncGenesysClient, emu_client: httpx.AsyncClient) -> None:
    sent = await send(genesys)
    assert sent.conversation_id
    session = await genesys.start_cobrowse(sent.conversation_id)
    assert session.join_code and session.websocket_url
    view = await genesys.get_cobrowse_session(sent.conversation_id)
    assert any(p.cobrowse_session_id == session.id for p in view.participants)
    await genesys.patch_cobrowse_session(sent.conversation_id)
    kinds = await ledger(emu_client, sent.conversation_id)
    assert kinds[-2:] == ["cobrowse.started", "cobrowse.ended"]


# --- Scenario 2: third-party chat ----------------------------------------------------------------
async def test_third_party_chat_is_routing_only(genesys: AsyncGenesysClient) -> None:
    chat = await genesys.create_third_party_chat(
        m.CreateWebChatRequest(queue_id=QUEUE.id, provider="Acme CRM", customer_name="Ada", attributes={"t": "1"})
    )
    assert chat.id and chat.participants is None  # the create answer is {id, otherMediaUris, selfUri}
    read = await genesys.get_conversation(chat.id)
    assert {leg.room_id for p in read.participants or [] for leg in p.chats or []} == {"NONE"}


# --- Scenario 5: Guest Chat ----------------------------------------------------------------------
async def test_guest_chat_lifecycle(genesys: AsyncGenesysClient, emu_client: httpx.AsyncClient) -> None:
    created = await genesys.create_guest_chat(
        m.CreateWebChatConversationRequest(
            organization_id=SEED.organization_id,
            deployment_id=GUESTCHAT,
            routing_target=m.WebChatRoutingTarget(target_address=QUEUE.name),
            member_info=m.GuestMemberInfo(display_name="Ada"),
        )
    )
    assert created.id and created.jwt and created.member and created.member.id
    cid, mid, jwt = created.id, created.member.id, created.jwt
    with pytest.raises(GenesysError) as caught:  # no event stream attached yet: not routed
        await genesys.send_guest_chat_message(cid, mid, "hello", jwt=jwt)
    assert caught.value.code == "chat.error.conversation.state"

    await emu_client.post(f"/__emulator/conversations/{cid}/guest/attach")
    message = await genesys.send_guest_chat_message(cid, mid, "hello", jwt=jwt)
    assert message.body == "hello" and message.sender.id == mid
    typing = await genesys.send_guest_chat_typing(cid, mid, jwt=jwt)
    assert typing.sender.id == mid
    members = await genesys.get_guest_chat_members(cid, jwt=jwt, page_size=25, page_number=1)
    assert mid in {member.id for member in members.entities}
    assert (await genesys.get_guest_chat_member(cid, mid, jwt=jwt)).role == "CUSTOMER"
    history = await genesys.get_guest_chat_messages(cid, jwt=jwt, sort_order="ascending", max_results=100)
    assert message.id in {entry.id for entry in history.entities}
    assert message.id
    assert (await genesys.get_guest_chat_message(cid, message.id, jwt=jwt)).body == "hello"
    assert await genesys.leave_guest_chat(cid, mid, jwt=jwt) is None

    kinds = await ledger(emu_client, cid)
    assert kinds[0] == "guest.session.created" and "guest.message.received" in kinds
    assert "guest.session.ended" in kinds


async def test_guest_calls_use_the_guest_jwt_not_the_oauth_token(genesys: AsyncGenesysClient) -> None:
    with pytest.raises(GenesysError) as caught:
        await genesys.get_guest_chat_members("00000000-0000-4000-8000-000000000000", jwt="not-a-guest-jwt")
    assert caught.value.status == 401


async def test_webmessaging_history_with_a_guest_jwt(
    genesys: AsyncGenesysClient, emu_client: httpx.AsyncClient
) -> None:
    opened = (await emu_client.post("/__emulator/webmessaging/sessions", json={})).json()
    history = await genesys.get_webmessaging_messages(jwt=opened["jwt"], page_size=25, page_number=1)
    assert history.page_number == 1 and isinstance(history.entities, list)


# --- Tokens, faults and the rate limit -----------------------------------------------------------
async def test_expired_token_is_refreshed_once(genesys: AsyncGenesysClient, emu_client: httpx.AsyncClient) -> None:
    sent = await send(genesys)
    assert sent.conversation_id
    # The emulator's clock jumps a day: its token expires, ours still looks fresh locally.
    await emu_client.post("/__emulator/clock", json={"advance_s": 86_400})
    assert (await genesys.get_conversation(sent.conversation_id)).id == sent.conversation_id
    assert (await ledger(emu_client)).count("token.issued") == 2


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ({"status": 409, "code": "request.conflict"}, 409, "request.conflict"),
        ({"status": 503}, 503, "service.unavailable"),
        ({"status": 500}, 500, "internal.server.error"),
    ],
)
async def test_injected_errors_are_typed(
    genesys: AsyncGenesysClient, emu_client: httpx.AsyncClient, fault: dict[str, Any], status: int, code: str
) -> None:
    sent = await send(genesys)
    assert sent.conversation_id
    added = await emu_client.post(
        "/__emulator/faults",
        json={"method": "POST", "path": "/api/v2/conversations/*/cobrowse", "times": 1, **fault},
    )
    assert added.status_code == 201
    with pytest.raises(GenesysError) as caught:
        await genesys.start_cobrowse(sent.conversation_id)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert (await genesys.start_cobrowse(sent.conversation_id)).join_code  # the fault fired once


async def test_a_429_pauses_the_client_for_retry_after(
    genesys: AsyncGenesysClient, emu_client: httpx.AsyncClient, redis_fake: fakeredis.FakeAsyncRedis
) -> None:
    await emu_client.post(
        "/__emulator/faults",
        json={"path": "/api/v2/conversations/*", "status": 429, "retry_after_s": 4, "times": 1},
    )
    with pytest.raises(GenesysError) as caught:
        await genesys.get_conversation("00000000-0000-4000-8000-000000000000")
    assert (caught.value.status, caught.value.code, caught.value.retry_after_s) == (
        429,
        "too.many.requests.retry.after",
        4.0,
    )
    assert 3_900 < await redis_fake.pttl(KEYS.pause) <= 4_000


async def test_dropped_connection_is_a_connection_error(
    genesys: AsyncGenesysClient, emu_client: httpx.AsyncClient
) -> None:
    sent = await send(genesys)
    assert sent.conversation_id
    await emu_client.post(
        "/__emulator/faults", json={"path": "/api/v2/conversations/*/cobrowse", "drop": "after", "times": 1}
    )
    with pytest.raises(GenesysConnectionError):
        await genesys.start_cobrowse(sent.conversation_id)
    assert (await ledger(emu_client, sent.conversation_id))[-1] == "cobrowse.started"  # it did happen
