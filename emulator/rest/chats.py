"""Third-party chats (``POST /api/v2/conversations/chats``) and the chat views of the Platform API.

A third-party chat is routing only: Genesys routes the interaction to a queue and tracks its state,
but there is no chat room (``roomId`` "NONE"), so posting text into it is 404 ``chat.error.not.found``
- the failure of the forum thread. Guest Chat conversations are chats too and do have a room: there
a connected agent's communication can post (``agent.message.sent``).
"""

from __future__ import annotations

from starlette.responses import Response

from emulator import views
from emulator.errors import ApiError
from emulator.rest.api import Auth, Call, api_route, ok
from emulator.rest.bodies import parse_body
from emulator.rest.conversations import conversation_of, patch_conversation, patch_participant
from emulator.rest.guestchat import message_list
from emulator.rest.wire_extra import ChatConversationEntityListing
from emulator.state.model import Conversation, Kind, Media
from genesys.models import CreateWebChatMessageRequest, CreateWebChatRequest

CHAT_KINDS = (Kind.THIRD_PARTY_CHAT, Kind.GUEST_CHAT)
CREATE_NOT_NULL = {
    "queueid": "chat.error.notnull.createconversationrequest.queueid",
    "provider": "chat.error.notnull.createconversationrequest.provider",
}
MESSAGE_NOT_NULL = {"body": "chat.error.notnull.createconversationmessagerequest.body"}


async def list_chats(call: Call) -> Response:
    # The logged-in *user's* chats: a client-credentials token has no user.
    return ok(ChatConversationEntityListing(entities=[], page_size=25, page_number=1, total=0, page_count=0))


async def post_chat(call: Call) -> Response:
    body = await parse_body(call.request, CreateWebChatRequest, missing_codes=CREATE_NOT_NULL)
    queue = call.fixtures.queue_by_id(body.queue_id)
    if queue is None:
        raise ApiError(400, "chat.error.queue.not.found")
    conv = call.state.chats.create(
        queue=queue,
        provider=body.provider,
        customer_name=body.customer_name,
        attributes=body.attributes or {},
    )
    return ok(views.chat_created(conv))


def _chat(call: Call, code: str = "conversation.error.conversation.not.found") -> Conversation:
    return conversation_of(call, code=code, kinds=CHAT_KINDS)


async def get_chat(call: Call) -> Response:
    return ok(views.chat_conversation(_chat(call)))


async def patch_chat(call: Call) -> Response:
    return await patch_conversation(call, _chat(call), Media.CHAT)


async def patch_chat_participant(call: Call) -> Response:
    return await patch_participant(call, _chat(call), Media.CHAT, body_required=True)


def _room(call: Call) -> Conversation:
    """A chat with a room: third-party chats have none, hence not found."""
    conv = _chat(call, code="chat.error.not.found")
    if conv.kind is Kind.THIRD_PARTY_CHAT:
        raise ApiError(404, "chat.error.not.found")
    return conv


async def post_chat_message(call: Call) -> Response:
    conv = _room(call)
    body = await parse_body(call.request, CreateWebChatMessageRequest, missing_codes=MESSAGE_NOT_NULL)
    found = conv.by_communication(call.param("communicationId"))
    if found is None:
        raise ApiError(404, "chat.error.not.found")
    sender, _ = found
    if sender.purpose == "customer":
        raise ApiError(400, "chat.error.member.state")
    message = call.state.guest_chats.post_message(conv, sender, body.body, body.body_type or "standard")
    return ok(views.web_chat_message(conv, message))


async def get_chat_messages(call: Call) -> Response:
    conv = _room(call)
    return ok(message_list(call, conv, self_uri=f"/api/v2/conversations/chats/{conv.id}/messages"))


_CHAT = "/api/v2/conversations/chats/{conversationId}"
ROUTES = [
    api_route("/api/v2/conversations/chats", list_chats, methods=["GET"], auth=Auth.CLIENT),
    api_route("/api/v2/conversations/chats", post_chat, methods=["POST"], auth=Auth.CLIENT),
    api_route(_CHAT, get_chat, methods=["GET"], auth=Auth.CLIENT),
    api_route(_CHAT, patch_chat, methods=["PATCH"], auth=Auth.CLIENT),
    api_route(_CHAT + "/participants/{participantId}", patch_chat_participant, methods=["PATCH"], auth=Auth.CLIENT),
    api_route(
        _CHAT + "/communications/{communicationId}/messages",
        post_chat_message,
        methods=["POST"],
        auth=Auth.CLIENT,
    ),
    api_route(_CHAT + "/messages", get_chat_messages, methods=["GET"], auth=Auth.CLIENT),
]
