"""Every Genesys REST operation Parley uses, as an :class:`~genesys.wire.Operation` value.

Each function here is the one place that knows an operation's method, path, body, query and
success model; both clients expose them as typed methods (``client.get_conversation(id)``).
Ids are percent-encoded so a hostile id cannot change the path.
"""

from __future__ import annotations

from urllib.parse import quote

from genesys.models import (
    AnalyticsConversationQueryResponse,
    ChatConversation,
    CobrowseConversation,
    CobrowseWebMessagingSession,
    Conversation,
    ConversationQuery,
    ConversationStateRequest,
    CreateWebChatConversationRequest,
    CreateWebChatConversationResponse,
    CreateWebChatMessageRequest,
    CreateWebChatRequest,
    MediaParticipantRequest,
    MessageConversation,
    MessageData,
    MessageIdList,
    MessengerType,
    SendAgentlessOutboundMessageRequest,
    SendAgentlessOutboundMessageResponse,
    SendMessagingTemplateRequest,
    SortOrder,
    TextMessageListing,
    WebChatBodyType,
    WebChatMemberInfo,
    WebChatMemberInfoEntityList,
    WebChatMessage,
    WebChatMessageEntityList,
    WebChatTyping,
    WebMessagingMessageEntityList,
)
from genesys.wire import Anonymous, GuestJwt, Operation, QueryValue

CONVERSATIONS = "/api/v2/conversations"
GUEST_CHAT = "/api/v2/webchat/guest/conversations"
DISCONNECTED = ConversationStateRequest()
PARTICIPANT_DISCONNECTED = MediaParticipantRequest(state="disconnected")


def _id(value: str) -> str:
    if not value:
        raise ValueError("empty id")
    return quote(value, safe="")


def _query(**values: QueryValue | None) -> dict[str, QueryValue]:
    return {name: value for name, value in values.items() if value is not None}


# --- Messaging -----------------------------------------------------------------------------------
def send_agentless(
    *,
    from_address: str,
    messenger_type: MessengerType,
    text: str | None = None,
    to_address: str | None = None,
    external_contact_id: str | None = None,
    use_existing_active_conversation: bool = False,
    messaging_template: SendMessagingTemplateRequest | None = None,
) -> Operation[SendAgentlessOutboundMessageResponse]:
    """POST /conversations/messages/agentless. Web messaging: ``from_address`` is the deployment id,
    ``external_contact_id`` is required and ``to_address`` unused; with
    ``use_existing_active_conversation`` the message joins the customer's live conversation instead
    of failing with 400 ``active.conversation``."""
    if messenger_type == "webmessaging" and not external_contact_id:
        raise ValueError("webmessaging agentless messages need external_contact_id")
    if messenger_type != "webmessaging" and not to_address:
        raise ValueError(f"{messenger_type} agentless messages need to_address")
    body = SendAgentlessOutboundMessageRequest(
        from_address=from_address,
        to_address=to_address if messenger_type != "webmessaging" else None,
        external_contact_id=external_contact_id,
        to_address_messenger_type=messenger_type,
        text_body=text,
        messaging_template=messaging_template,
        use_existing_active_conversation=use_existing_active_conversation,
    )
    return Operation("POST", f"{CONVERSATIONS}/messages/agentless", SendAgentlessOutboundMessageResponse, body=body)


def get_conversation(conversation_id: str) -> Operation[Conversation]:
    """GET /conversations/{id}: participants[].messages[].id are the communication ids."""
    return Operation("GET", f"{CONVERSATIONS}/{_id(conversation_id)}", Conversation)


def get_message_conversation(conversation_id: str) -> Operation[MessageConversation]:
    return Operation("GET", f"{CONVERSATIONS}/messages/{_id(conversation_id)}", MessageConversation)


# --- Finding what a lost request did --------------------------------------------------------------
def query_conversation_details(query: ConversationQuery) -> Operation[AnalyticsConversationQueryResponse]:
    """POST /analytics/conversations/details/query: which conversations exist (see
    :meth:`ConversationQuery.customer_conversations` and :meth:`ConversationQuery.with_participant_attribute`).
    Analytics lags behind: an empty answer right after a lost request does not prove nothing was created."""
    path = "/api/v2/analytics/conversations/details/query"
    return Operation("POST", path, AnalyticsConversationQueryResponse, body=query, read=True)


def get_message(conversation_id: str, message_id: str) -> Operation[MessageData]:
    """GET /conversations/messages/{id}/messages/{messageId}: one message with its text (``textBody``,
    ``normalizedMessage.text``), to tell whether a message found in a conversation is ours."""
    path = f"{CONVERSATIONS}/messages/{_id(conversation_id)}/messages/{_id(message_id)}"
    return Operation("GET", path, MessageData)


def get_messages_bulk(conversation_id: str, message_ids: list[str]) -> Operation[TextMessageListing]:
    """POST /conversations/messages/{id}/messages/bulk with up to 1,000 message ids -> their MessageData
    (ids the conversation does not have are left out)."""
    if len(message_ids) > 1000:
        raise ValueError("at most 1000 message ids per bulk request")
    path = f"{CONVERSATIONS}/messages/{_id(conversation_id)}/messages/bulk"
    return Operation("POST", path, TextMessageListing, body=MessageIdList(message_ids=message_ids), read=True)


# --- Ending conversations ------------------------------------------------------------------------
def patch_message_conversation(
    conversation_id: str, body: ConversationStateRequest = DISCONNECTED
) -> Operation[Conversation]:
    """PATCH /conversations/messages/{id} ``{"state": "disconnected"}`` -> 200 Conversation."""
    return Operation("PATCH", f"{CONVERSATIONS}/messages/{_id(conversation_id)}", Conversation, body=body)


def patch_message_participant(
    conversation_id: str, participant_id: str, body: MediaParticipantRequest = PARTICIPANT_DISCONNECTED
) -> Operation[None]:
    """PATCH /conversations/messages/{id}/participants/{pid} -> 202, no body."""
    path = f"{CONVERSATIONS}/messages/{_id(conversation_id)}/participants/{_id(participant_id)}"
    return Operation("PATCH", path, None, body=body)


def patch_conversation_participant(
    conversation_id: str, participant_id: str, body: MediaParticipantRequest = PARTICIPANT_DISCONNECTED
) -> Operation[None]:
    """PATCH /conversations/{id}/participants/{pid} -> 202 (wrap-up may be required)."""
    path = f"{CONVERSATIONS}/{_id(conversation_id)}/participants/{_id(participant_id)}"
    return Operation("PATCH", path, None, body=body)


def disconnect_conversation(conversation_id: str) -> Operation[None]:
    """POST /conversations/{id}/disconnect -> 202: full teardown, a recovery tool (system wrap-up)."""
    return Operation("POST", f"{CONVERSATIONS}/{_id(conversation_id)}/disconnect", None)


def delete_conversation(conversation_id: str) -> Operation[None]:
    """DELETE /conversations/{id} -> 204 for a user token; 400 ``not.a.user`` with client credentials."""
    return Operation("DELETE", f"{CONVERSATIONS}/{_id(conversation_id)}", None)


# --- Cobrowse ------------------------------------------------------------------------------------
def start_cobrowse(conversation_id: str) -> Operation[CobrowseWebMessagingSession]:
    """POST /conversations/{id}/cobrowse (no body) -> joinCode, websocketUrl."""
    return Operation("POST", f"{CONVERSATIONS}/{_id(conversation_id)}/cobrowse", CobrowseWebMessagingSession)


def get_cobrowse_session(conversation_id: str) -> Operation[CobrowseConversation]:
    return Operation("GET", f"{CONVERSATIONS}/cobrowsesessions/{_id(conversation_id)}", CobrowseConversation)


def patch_cobrowse_session(
    conversation_id: str, body: ConversationStateRequest = DISCONNECTED
) -> Operation[Conversation]:
    """PATCH /conversations/cobrowsesessions/{id} ``{"state": "disconnected"}``: ends the cobrowse."""
    path = f"{CONVERSATIONS}/cobrowsesessions/{_id(conversation_id)}"
    return Operation("PATCH", path, Conversation, body=body)


def patch_cobrowse_participant(
    conversation_id: str, participant_id: str, body: MediaParticipantRequest = PARTICIPANT_DISCONNECTED
) -> Operation[None]:
    path = f"{CONVERSATIONS}/cobrowsesessions/{_id(conversation_id)}/participants/{_id(participant_id)}"
    return Operation("PATCH", path, None, body=body)


# --- Third-party chat (routing only: no chat room exists to post into) ---------------------------
def create_third_party_chat(body: CreateWebChatRequest) -> Operation[ChatConversation]:
    return Operation("POST", f"{CONVERSATIONS}/chats", ChatConversation, body=body)


# --- Guest Chat API (guest JWT, not the OAuth token) ---------------------------------------------
def create_guest_chat(body: CreateWebChatConversationRequest) -> Operation[CreateWebChatConversationResponse]:
    """POST /webchat/guest/conversations, unauthenticated. Nothing is routed until a websocket is
    connected to the response's ``eventStreamUri``."""
    return Operation("POST", GUEST_CHAT, CreateWebChatConversationResponse, auth=Anonymous(), body=body)


def _member_path(conversation_id: str, member_id: str) -> str:
    return f"{GUEST_CHAT}/{_id(conversation_id)}/members/{_id(member_id)}"


def send_guest_chat_message(
    conversation_id: str, member_id: str, text: str, *, jwt: str, body_type: WebChatBodyType = "standard"
) -> Operation[WebChatMessage]:
    body = CreateWebChatMessageRequest(body=text, body_type=body_type)
    path = f"{_member_path(conversation_id, member_id)}/messages"
    return Operation("POST", path, WebChatMessage, auth=GuestJwt(jwt), body=body)


def send_guest_chat_typing(conversation_id: str, member_id: str, *, jwt: str) -> Operation[WebChatTyping]:
    path = f"{_member_path(conversation_id, member_id)}/typing"
    return Operation("POST", path, WebChatTyping, auth=GuestJwt(jwt))


def get_guest_chat_members(
    conversation_id: str,
    *,
    jwt: str,
    page_size: int | None = None,
    page_number: int | None = None,
    exclude_disconnected_members: bool | None = None,
) -> Operation[WebChatMemberInfoEntityList]:
    params = _query(pageSize=page_size, pageNumber=page_number, excludeDisconnectedMembers=exclude_disconnected_members)
    path = f"{GUEST_CHAT}/{_id(conversation_id)}/members"
    return Operation("GET", path, WebChatMemberInfoEntityList, auth=GuestJwt(jwt), params=params)


def get_guest_chat_member(conversation_id: str, member_id: str, *, jwt: str) -> Operation[WebChatMemberInfo]:
    return Operation("GET", _member_path(conversation_id, member_id), WebChatMemberInfo, auth=GuestJwt(jwt))


def get_guest_chat_messages(
    conversation_id: str,
    *,
    jwt: str,
    after: str | None = None,
    before: str | None = None,
    sort_order: SortOrder | None = None,
    max_results: int | None = None,
) -> Operation[WebChatMessageEntityList]:
    """``after``/``before`` are message ids; ``max_results`` <= 100."""
    if max_results is not None and not 1 <= max_results <= 100:
        raise ValueError("max_results must be 1..100")
    params = _query(after=after, before=before, sortOrder=sort_order, maxResults=max_results)
    path = f"{GUEST_CHAT}/{_id(conversation_id)}/messages"
    return Operation("GET", path, WebChatMessageEntityList, auth=GuestJwt(jwt), params=params)


def get_guest_chat_message(conversation_id: str, message_id: str, *, jwt: str) -> Operation[WebChatMessage]:
    path = f"{GUEST_CHAT}/{_id(conversation_id)}/messages/{_id(message_id)}"
    return Operation("GET", path, WebChatMessage, auth=GuestJwt(jwt))


def leave_guest_chat(conversation_id: str, member_id: str, *, jwt: str) -> Operation[None]:
    """DELETE the guest's own member -> 204: the guest leaves, which ends a guest chat."""
    return Operation("DELETE", _member_path(conversation_id, member_id), None, auth=GuestJwt(jwt))


# --- Web messaging history (guest JWT) -----------------------------------------------------------
def get_webmessaging_messages(
    *, jwt: str, page_size: int | None = None, page_number: int | None = None, origin: str | None = None
) -> Operation[WebMessagingMessageEntityList]:
    """Pages are newest first. ``origin``: the ``Origin`` header, for a deployment that restricts origins."""
    params = _query(pageSize=page_size, pageNumber=page_number)
    return Operation(
        "GET",
        "/api/v2/webmessaging/messages",
        WebMessagingMessageEntityList,
        auth=GuestJwt(jwt),
        params=params,
        headers={"Origin": origin} if origin else {},
    )
