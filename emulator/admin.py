"""``/__emulator/...``: what a test harness or an operator uses to drive and inspect the emulator.

No token, no rate limit, no faults. Names are fixed (see emulator/README.md): fixtures, ledger,
faults, reset, config, clock, and helpers that play the other side of a conversation (an agent who
joins, answers and ends it; a customer who leaves; a guest socket attaching).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator.auth import WEBMESSAGING_ISSUER, GuestJwtData
from emulator.config import EmulatorConfig
from emulator.errors import ApiError
from emulator.faults import FaultList, FaultSpec
from emulator.ledger import LedgerFilter, wire_page
from emulator.rest.api import emulator_of
from emulator.rest.bodies import parse_body
from emulator.runtime import ConfigPatch, Emulator
from emulator.state.model import Conversation


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClockAdvance(_Body):
    advance_s: float = Field(ge=0, description="Move the emulator's clock forward by this many seconds.")


class ClockState(_Body):
    offset_s: float
    now: datetime


class AgentJoin(_Body):
    agent_id: str | None = Field(default=None, description="A fixture agent id; default the first agent.")


class AgentJoined(_Body):
    conversation_id: str
    participant_id: str
    communication_id: str
    user_id: str
    name: str


class AgentMessage(_Body):
    text: str = Field(min_length=1, max_length=4000, repr=False)


class MessageSent(_Body):
    conversation_id: str
    message_id: str


class AgentDisconnect(_Body):
    end_conversation: bool = Field(default=True, description="False: the agent leaves, the customer stays.")


class ConversationStatus(_Body):
    conversation_id: str
    live: bool
    end_time: datetime | None


class WebMessagingSessionOpen(_Body):
    deployment_id: str | None = Field(default=None, description="Default: the first webmessaging deployment.")


class WebMessagingSessionOpened(_Body):
    session_id: str
    deployment_id: str
    jwt: str = Field(repr=False)


def _json(body: BaseModel, status: int = 200) -> JSONResponse:
    return JSONResponse(body.model_dump(mode="json", exclude_none=False), status_code=status)


def _conversation(request: Request) -> Conversation:
    return emulator_of(request).state.conversations.require(request.path_params["conversationId"], code="not.found")


def _status(conv: Conversation) -> ConversationStatus:
    return ConversationStatus(conversation_id=conv.id, live=conv.live, end_time=conv.end_time)


# --- fixtures, ledger, reset, config, clock ------------------------------------------------------
async def fixtures(request: Request) -> Response:
    return _json(emulator_of(request).fixtures)


async def ledger(request: Request) -> Response:
    params = request.query_params
    try:
        query = LedgerFilter(
            kind=params.getlist("kind"),
            conversation_id=params.get("conversation_id"),
            after=params.get("after", 0),
        )
    except ValidationError as exc:
        raise ApiError(400, "invalid.query.param.value", message=str(exc.errors()[0]["msg"])) from None
    return JSONResponse(wire_page(emulator_of(request).ledger.entries(query)))


async def reset(request: Request) -> Response:
    emulator_of(request).reset()
    return Response(status_code=204)


async def get_config(request: Request) -> Response:
    return _json(emulator_of(request).config)


async def patch_config(request: Request) -> Response:
    patch = await parse_body(request, ConfigPatch)
    emulator = emulator_of(request)
    try:
        config: EmulatorConfig = emulator.tune(patch)
    except ValidationError as exc:
        raise ApiError(400, "invalid.value", message=str(exc.errors()[0]["msg"])) from None
    return _json(config)


async def advance_clock(request: Request) -> Response:
    body = await parse_body(request, ClockAdvance)
    clock = emulator_of(request).clock
    clock.advance(body.advance_s)
    return _json(ClockState(offset_s=clock.offset_s, now=clock.now()))


# --- faults ----------------------------------------------------------------------------------------
async def list_faults(request: Request) -> Response:
    return _json(FaultList(faults=emulator_of(request).faults.list()))


async def add_fault(request: Request) -> Response:
    spec = await parse_body(request, FaultSpec)
    return _json(emulator_of(request).faults.add(spec), status=201)


async def clear_faults(request: Request) -> Response:
    emulator_of(request).faults.clear()
    return Response(status_code=204)


async def delete_fault(request: Request) -> Response:
    if not emulator_of(request).faults.remove(request.path_params["faultId"]):
        raise ApiError(404, "not.found")
    return Response(status_code=204)


# --- the other side of a conversation ----------------------------------------------------------------
async def agent_join(request: Request) -> Response:
    body = await parse_body(request, AgentJoin, required=False)
    emulator: Emulator = emulator_of(request)
    agent = emulator.fixtures.agent(body.agent_id)
    if agent is None:
        raise ApiError(404, "not.found", message="No such agent in the fixtures.")
    conv = _conversation(request)
    participant = emulator.state.agents.join(conv, agent)
    return _json(
        AgentJoined(
            conversation_id=conv.id,
            participant_id=participant.id,
            communication_id=participant.communications[0].id,
            user_id=agent.id,
            name=agent.name,
        )
    )


async def agent_message(request: Request) -> Response:
    body = await parse_body(request, AgentMessage)
    conv = _conversation(request)
    message = emulator_of(request).state.agents.send(conv, body.text)
    return _json(MessageSent(conversation_id=conv.id, message_id=message.id))


async def agent_typing(request: Request) -> Response:
    """The agent types: a typing indicator on the guest's socket (``agent.typing``)."""
    conv = _conversation(request)
    emulator_of(request).state.agents.typing(conv)
    return _json(_status(conv))


async def agent_disconnect(request: Request) -> Response:
    body = await parse_body(request, AgentDisconnect, required=False)
    conv = _conversation(request)
    emulator_of(request).state.agents.disconnect(conv, end_conversation=body.end_conversation)
    return _json(_status(conv))


async def customer_disconnect(request: Request) -> Response:
    conv = _conversation(request)
    emulator_of(request).state.conversations.customer_disconnect(conv)
    return _json(_status(conv))


async def guest_attach(request: Request) -> Response:
    """What attaching a websocket to a Guest Chat ``eventStreamUri`` does: the chat gets routed."""
    conv = _conversation(request)
    if conv.guest_chat is None:
        raise ApiError(400, "bad.request", message="Not a Guest Chat conversation.")
    emulator_of(request).state.guest_chats.attach_event_stream(conv)
    return _json(_status(conv))


async def open_webmessaging_session(request: Request) -> Response:
    body = await parse_body(request, WebMessagingSessionOpen, required=False)
    emulator = emulator_of(request)
    deployments = [d for d in emulator.fixtures.deployments if d.type == "webmessaging"]
    deployment_id = body.deployment_id or deployments[0].id
    if emulator.fixtures.deployment(deployment_id, "webmessaging") is None:
        raise ApiError(404, "not.found", message="No such webmessaging deployment in the fixtures.")
    session = emulator.state.webmessaging.open(deployment_id)
    jwt, _ = emulator.jwts.issue(
        WEBMESSAGING_ISSUER,
        GuestJwtData(did=deployment_id, sub=session.id),
        emulator.clock.time(),
        emulator.config.webmessaging_jwt_expires_in_s,
    )
    return _json(WebMessagingSessionOpened(session_id=session.id, deployment_id=deployment_id, jwt=jwt), 201)


_CONV = "/__emulator/conversations/{conversationId}"
ROUTES = [
    Route("/__emulator/fixtures", fixtures, methods=["GET"]),
    Route("/__emulator/ledger", ledger, methods=["GET"]),
    Route("/__emulator/reset", reset, methods=["POST"]),
    Route("/__emulator/config", get_config, methods=["GET"]),
    Route("/__emulator/config", patch_config, methods=["PATCH"]),
    Route("/__emulator/clock", advance_clock, methods=["POST"]),
    Route("/__emulator/faults", list_faults, methods=["GET"]),
    Route("/__emulator/faults", add_fault, methods=["POST"]),
    Route("/__emulator/faults", clear_faults, methods=["DELETE"]),
    Route("/__emulator/faults/{faultId}", delete_fault, methods=["DELETE"]),
    Route(_CONV + "/agent/join", agent_join, methods=["POST"]),
    Route(_CONV + "/agent/messages", agent_message, methods=["POST"]),
    Route(_CONV + "/agent/typing", agent_typing, methods=["POST"]),
    Route(_CONV + "/agent/disconnect", agent_disconnect, methods=["POST"]),
    Route(_CONV + "/customer/disconnect", customer_disconnect, methods=["POST"]),
    Route(_CONV + "/guest/attach", guest_attach, methods=["POST"]),
    Route("/__emulator/webmessaging/sessions", open_webmessaging_session, methods=["POST"]),
]
