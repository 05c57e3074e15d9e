"""Guest Chat REST (``/api/v2/webchat/guest/...``; deprecated by Genesys, still served).

Create needs no token; it checks the organization and deployment, and ``routingTarget.targetAddress``
must be a queue NAME (a queue id or an unknown name is 400 ``chat.error.invalid.queue``). It answers
the conversation id, the guest's member, a JWT and the ``eventStreamUri`` the guest must attach a
websocket to: until then the chat is not routed and sending or typing is 400
``chat.error.conversation.state`` ("The conversation is not active"). Every other call needs the JWT
as a bearer token and may only act for the JWT's own conversation and member.
"""

from __future__ import annotations

from starlette.responses import Response

from emulator import views
from emulator.auth import GUEST_CHAT_ISSUER, GuestJwtData
from emulator.errors import ApiError
from emulator.rest.api import Auth, Call, api_route, no_content, ok
from emulator.rest.bodies import parse_body, query_bool, query_choice, query_int
from emulator.rest.cobrowse import websocket_base
from emulator.state.guestchat import members
from emulator.state.model import Communication, Conversation, Kind, MemberInfo, Participant, new_id
from genesys.models import (
    CreateWebChatConversationRequest,
    CreateWebChatConversationResponse,
    CreateWebChatMessageRequest,
    WebChatConversation,
    WebChatMemberInfoEntityList,
    WebChatMessageEntityList,
    WebChatTyping,
)

_NN = "chat.error.notnull.createconversationrequest."
CREATE_NOT_NULL = {
    "organizationid": _NN + "organizationid",
    "deploymentid": "chat.error.pattern.createconversationrequest.deploymentid",
    "routingtarget": _NN + "routingtarget",
    "routingtarget.targetaddress": "chat.error.createconversationrequest.routingtarget",
    "memberinfo": _NN + "memberinfo",
    "memberinfo.displayname": _NN + "memberinfo.displayname",
    "journeycontext.customer": _NN + "journeycontext.customer",
    "journeycontext.customer.id": _NN + "journeycontext.customer.customerid",
    "journeycontext.customer.idtype": _NN + "journeycontext.customer.customeridtype",
    "journeycontext.customersession.id": _NN + "journeycontext.customersession.sessionid",
    "journeycontext.customersession.type": _NN + "journeycontext.customersession.sessionidtype",
    "journeycontext.triggeringaction.id": _NN + "journeycontext.triggeringaction.actionid",
    "journeycontext.triggeringaction.actionmap": _NN + "journeycontext.triggeringaction.actionmapid",
    "journeycontext.triggeringaction.actionmap.id": _NN + "journeycontext.triggeringaction.actionmapid",
    "journeycontext.triggeringaction.actionmap.version": _NN + "journeycontext.triggeringaction.actionmapversion",
}
MESSAGE_NOT_NULL = {"body": "chat.error.notnull.createconversationmessagerequest.body"}


async def create(call: Call) -> Response:
    body = await parse_body(call.request, CreateWebChatConversationRequest, missing_codes=CREATE_NOT_NULL)
    fixtures = call.fixtures
    if body.organization_id != fixtures.organization_id:
        raise ApiError(400, "chat.error.bad.request", message="Unknown organizationId.")
    if fixtures.deployment(body.deployment_id, "guestchat") is None:
        raise ApiError(400, "chat.error.bad.request", message="Unknown or disabled deploymentId.")
    queue = fixtures.queue_by_name(body.routing_target.target_address)
    if queue is None:
        raise ApiError(400, "chat.error.invalid.queue")
    info = body.member_info
    conv, guest = call.state.guest_chats.create(
        deployment_id=body.deployment_id,
        queue=queue,
        member=MemberInfo(
            role="CUSTOMER",
            display_name=info.display_name,
            first_name=info.first_name,
            last_name=info.last_name,
            email=info.email,
            phone_number=info.phone_number,
            avatar_image_url=info.avatar_image_url,
            custom_fields=info.custom_fields,
        ),
    )
    leg = guest.communications[0]
    jwt, _ = call.jwts.issue(
        GUEST_CHAT_ISSUER,
        GuestJwtData(did=body.deployment_id, conv=conv.id, sub=leg.id),
        call.clock.time(),
        call.config.guest_jwt_expires_in_s,
    )
    return ok(
        CreateWebChatConversationResponse(
            id=conv.id,
            jwt=jwt,
            # Genesys: wss://carrierpigeon.<domain>/v1/token/<jwt> - the token sits in the path.
            event_stream_uri=f"{websocket_base(call.request)}/v1/token/{jwt}",
            member=views.member(guest, leg),
        )
    )


def _conversation(call: Call) -> Conversation:
    """The JWT's own Guest Chat conversation."""
    conv = call.state.conversations.get(call.param("conversationId"))
    if conv is None or conv.kind is not Kind.GUEST_CHAT:
        raise ApiError(404, "chat.error.not.found")
    if call.guest_claims.data.conv != conv.id:
        raise ApiError(403, "not.authorized")
    return conv


def _member(call: Call, conv: Conversation) -> tuple[Participant, Communication]:
    found = conv.by_communication(call.param("memberId"))
    if found is None or found[0].member is None:
        raise ApiError(404, "chat.error.not.found")
    return found


def _own_member(call: Call, conv: Conversation) -> Participant:
    """The guest acting for itself: another member's id is not the JWT's to use."""
    participant, leg = _member(call, conv)
    if leg.id != call.guest_claims.data.sub:
        raise ApiError(403, "not.authorized")
    return participant


async def get_members(call: Call) -> Response:
    conv = _conversation(call)
    page_size = query_int(call.request, "pageSize", 25, lo=1, hi=100)
    page_number = query_int(call.request, "pageNumber", 1, lo=1, hi=10_000)
    exclude_gone = query_bool(call.request, "excludeDisconnectedMembers", False)
    listed = [views.member(p, leg) for p, leg in members(conv) if leg.live or not exclude_gone]
    start = (page_number - 1) * page_size
    return ok(
        WebChatMemberInfoEntityList(
            entities=listed[start : start + page_size],
            page_size=page_size,
            page_number=page_number,
            total=len(listed),
            page_count=(len(listed) + page_size - 1) // page_size,
        )
    )


async def get_member(call: Call) -> Response:
    return ok(views.member(*_member(call, _conversation(call))))


async def delete_member(call: Call) -> Response:
    """The guest leaves: its member is DISCONNECTED and the chat ends (``guest.session.ended``)."""
    conv = _conversation(call)
    guest = _own_member(call, conv)
    if not guest.live:
        raise ApiError(400, "chat.error.member.state")
    call.state.conversations.disconnect_participant(conv, guest, disconnect_type="client", by="guest")
    return no_content()


async def post_message(call: Call) -> Response:
    conv = _conversation(call)
    guest = _own_member(call, conv)
    body = await parse_body(call.request, CreateWebChatMessageRequest, missing_codes=MESSAGE_NOT_NULL)
    message = call.state.guest_chats.post_message(conv, guest, body.body, body.body_type or "standard")
    return ok(views.web_chat_message(conv, message))


async def post_typing(call: Call) -> Response:
    conv = _conversation(call)
    guest = _own_member(call, conv)
    at = call.state.guest_chats.typing(conv, guest)
    return ok(
        WebChatTyping(
            id=new_id(),
            conversation=WebChatConversation(id=conv.id),
            sender=views.member(guest, guest.communications[0]),
            timestamp=at,
        )
    )


def message_list(call: Call, conv: Conversation, *, self_uri: str) -> WebChatMessageEntityList:
    """A page of a chat's messages: ``after``/``before`` take message ids; ascending by default."""
    after = call.request.query_params.get("after")
    before = call.request.query_params.get("before")
    descending = query_choice(call.request, "sortOrder", "ascending", ("ascending", "descending")) == "descending"
    max_results = query_int(call.request, "maxResults", 100, lo=1, hi=100)
    ids = [m.id for m in conv.messages]
    lo = ids.index(after) + 1 if after in ids else 0
    hi = ids.index(before) if before in ids else len(ids)
    window = conv.messages[lo:hi]
    if descending:
        window = window[::-1]
    page = window[:max_results]
    return WebChatMessageEntityList(
        entities=[views.web_chat_message(conv, m) for m in page],
        page_size=len(page),
        next=f"{self_uri}?after={page[-1].id}" if len(window) > max_results and not descending else None,
        self_uri=self_uri,
    )


async def get_messages(call: Call) -> Response:
    conv = _conversation(call)
    return ok(message_list(call, conv, self_uri=f"/api/v2/webchat/guest/conversations/{conv.id}/messages"))


async def get_message(call: Call) -> Response:
    conv = _conversation(call)
    message = conv.message(call.param("messageId"))
    if message is None:
        raise ApiError(404, "chat.error.not.found")
    return ok(views.web_chat_message(conv, message))


_CONV = "/api/v2/webchat/guest/conversations/{conversationId}"
_MEMBER = _CONV + "/members/{memberId}"
ROUTES = [
    api_route("/api/v2/webchat/guest/conversations", create, methods=["POST"], auth=Auth.NONE),
    api_route(_CONV + "/members", get_members, methods=["GET"], auth=Auth.GUEST_CHAT),
    api_route(_MEMBER, get_member, methods=["GET"], auth=Auth.GUEST_CHAT),
    api_route(_MEMBER, delete_member, methods=["DELETE"], auth=Auth.GUEST_CHAT),
    api_route(_MEMBER + "/messages", post_message, methods=["POST"], auth=Auth.GUEST_CHAT),
    api_route(_MEMBER + "/typing", post_typing, methods=["POST"], auth=Auth.GUEST_CHAT),
    api_route(_CONV + "/messages", get_messages, methods=["GET"], auth=Auth.GUEST_CHAT),
    api_route(_CONV + "/messages/{messageId}", get_message, methods=["GET"], auth=Auth.GUEST_CHAT),
]
