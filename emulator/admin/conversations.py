"""``/__emulator/conversations/{id}/...``: play the other side of a conversation.

An agent who joins (the queue leg ends as routed), writes, types and leaves or ends the
conversation; a customer who leaves; what attaching a Guest Chat's event stream does, without a
socket; and a Web Messaging guest session with its JWT, without a socket.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator.admin import AdminBody, answer
from emulator.auth import WEBMESSAGING_ISSUER, GuestJwtData
from emulator.errors import ApiError
from emulator.rest.api import emulator_of
from emulator.rest.bodies import parse_body
from emulator.runtime import Emulator
from emulator.state.model import Conversation


class AgentJoin(AdminBody):
    agent_id: str | None = Field(default=None, description="A fixture agent id; default the first agent.")


class AgentJoined(AdminBody):
    conversation_id: str
    participant_id: str
    communication_id: str
    user_id: str
    name: str


class AgentMessage(AdminBody):
    text: str = Field(min_length=1, max_length=4000, repr=False)


class MessageSent(AdminBody):
    conversation_id: str
    message_id: str


class AgentDisconnect(AdminBody):
    end_conversation: bool = Field(default=True, description="False: the agent leaves, the customer stays.")


class ConversationStatus(AdminBody):
    conversation_id: str
    live: bool
    end_time: datetime | None


class WebMessagingSessionOpen(AdminBody):
    deployment_id: str | None = Field(default=None, description="Default: the first webmessaging deployment.")


class WebMessagingSessionOpened(AdminBody):
    session_id: str
    deployment_id: str
    jwt: str = Field(repr=False)


def _conversation(request: Request) -> Conversation:
    return emulator_of(request).state.conversations.require(request.path_params["conversationId"], code="not.found")


def _status(conv: Conversation) -> ConversationStatus:
    return ConversationStatus(conversation_id=conv.id, live=conv.live, end_time=conv.end_time)


async def agent_join(request: Request) -> Response:
    body = await parse_body(request, AgentJoin, required=False)
    emulator: Emulator = emulator_of(request)
    agent = emulator.fixtures.agent(body.agent_id)
    if agent is None:
        raise ApiError(404, "not.found", message="No such agent in the fixtures.")
    conv = _conversation(request)
    participant = emulator.state.agents.join(conv, agent)
    return answer(
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
    return answer(MessageSent(conversation_id=conv.id, message_id=message.id))


async def agent_typing(request: Request) -> Response:
    """The agent types: a typing indicator on the guest's socket (``agent.typing``)."""
    conv = _conversation(request)
    emulator_of(request).state.agents.typing(conv)
    return answer(_status(conv))


async def agent_disconnect(request: Request) -> Response:
    body = await parse_body(request, AgentDisconnect, required=False)
    conv = _conversation(request)
    emulator_of(request).state.agents.disconnect(conv, end_conversation=body.end_conversation)
    return answer(_status(conv))


async def customer_disconnect(request: Request) -> Response:
    conv = _conversation(request)
    emulator_of(request).state.conversations.customer_disconnect(conv)
    return answer(_status(conv))


async def guest_attach(request: Request) -> Response:
    """What attaching a websocket to a Guest Chat ``eventStreamUri`` does: the chat gets routed."""
    conv = _conversation(request)
    if conv.guest_chat is None:
        raise ApiError(400, "bad.request", message="Not a Guest Chat conversation.")
    emulator_of(request).state.guest_chats.attach_event_stream(conv)
    return answer(_status(conv))


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
    return answer(WebMessagingSessionOpened(session_id=session.id, deployment_id=deployment_id, jwt=jwt), 201)


_CONV = "/__emulator/conversations/{conversationId}"
ROUTES = [
    Route(_CONV + "/agent/join", agent_join, methods=["POST"]),
    Route(_CONV + "/agent/messages", agent_message, methods=["POST"]),
    Route(_CONV + "/agent/typing", agent_typing, methods=["POST"]),
    Route(_CONV + "/agent/disconnect", agent_disconnect, methods=["POST"]),
    Route(_CONV + "/customer/disconnect", customer_disconnect, methods=["POST"]),
    Route(_CONV + "/guest/attach", guest_attach, methods=["POST"]),
    Route("/__emulator/webmessaging/sessions", open_webmessaging_session, methods=["POST"]),
]
