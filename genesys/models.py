"""Pydantic v2 wire models for the Genesys Cloud operations Parley uses.

JSON names are the contract's (``../shared/contracts/genesys-platform-slice.swagger.json``): Python
attributes are snake_case and the camelCase alias is generated (explicit where Genesys spells it
differently, e.g. ``messageURI``). Each model names its contract definition in ``DEFINITION`` so a
test can check every alias against the contract.

- Request models forbid unknown fields: a typo fails here, not as a 400 ``invalid.property``.
- Response models ignore unknown fields (Genesys adds fields without notice) and type open-ended
  enumerations (state, purpose, disconnectType, ...) as ``str`` for the same reason: a new value
  must not make a successful call look like a failure.
- Serialize with :meth:`WireModel.to_wire` (by alias, no ``None``), which is what goes on the wire.
- Customer text and guest tokens are ``repr=False`` so a logged model never shows them.

The emulator builds its responses and parses its requests with these same models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# --- Closed enumerations (used in requests, where sending an unknown value is our bug) -----------
MessengerType = Literal["sms", "whatsapp", "open", "webmessaging", "apple"]
ParticipantStateRequest = Literal["connected", "disconnected"]  # the only values the API accepts
WebChatBodyType = Literal["standard", "notice", "member-join", "member-leave", "media-request"]
SortOrder = Literal["ascending", "descending"]


class WireModel(BaseModel):
    """Base of every Genesys JSON body."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)

    DEFINITION: ClassVar[str] = ""
    """Name of the contract definition this model mirrors (checked by tests)."""

    def to_wire(self) -> dict[str, Any]:
        """The JSON object sent or returned on the wire."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class RequestModel(WireModel):
    model_config = ConfigDict(extra="forbid")


class ResponseModel(WireModel):
    model_config = ConfigDict(extra="ignore")


# ================================================================================================
# Shared small types
# ================================================================================================
class AddressableEntityRef(ResponseModel):
    DEFINITION = "AddressableEntityRef"
    id: str | None = None
    self_uri: str | None = None


class DomainEntityRef(ResponseModel):
    DEFINITION = "DomainEntityRef"
    id: str | None = None
    name: str | None = None
    self_uri: str | None = None


class DivisionEntityRef(ResponseModel):
    DEFINITION = "DivisionEntityRef"
    id: str | None = None
    name: str | None = None
    self_uri: str | None = None


class ConversationDivisionMembership(ResponseModel):
    DEFINITION = "ConversationDivisionMembership"
    division: DomainEntityRef | None = None
    entities: list[DivisionEntityRef] | None = None


class Address(ResponseModel):
    DEFINITION = "Address"
    name: str | None = None
    name_raw: str | None = None
    address_normalized: str | None = None
    address_raw: str | None = None
    address_displayable: str | None = None


class Wrapup(ResponseModel):
    DEFINITION = "Wrapup"
    code: str | None = None
    name: str | None = None
    notes: str | None = Field(default=None, repr=False)
    tags: list[str] | None = None
    duration_seconds: int | None = None
    end_time: datetime | None = None
    provisional: bool | None = None


class ErrorInfo(ResponseModel):
    DEFINITION = "ErrorInfo"
    code: str | None = None
    message: str | None = None


# --- ErrorBody -----------------------------------------------------------------------------------
class ErrorDetail(ResponseModel):
    DEFINITION = "Detail"
    error_code: str | None = None
    field_name: str | None = None
    entity_id: str | None = None
    entity_name: str | None = None


class ErrorLimit(ResponseModel):
    DEFINITION = "Limit"
    key: str | None = None
    namespace: str | None = None
    value: int | None = None


class ErrorBody(ResponseModel):
    """Every non-2xx answer of the Platform API (the OAuth endpoint uses :class:`OAuthError`)."""

    DEFINITION = "ErrorBody"
    message: str | None = None
    code: str | None = None
    status: int | None = None
    entity_id: str | None = None
    entity_name: str | None = None
    message_with_params: str | None = None
    message_params: dict[str, str] | None = None
    context_id: str | None = None
    details: list[ErrorDetail] | None = None
    errors: list[ErrorBody] | None = None
    limit: ErrorLimit | None = None


# --- Journey context (request of guest chat create; also echoed on participants) ----------------
class JourneyCustomer(ResponseModel):
    DEFINITION = "JourneyCustomer"
    id: str
    id_type: str


class JourneyCustomerSession(ResponseModel):
    DEFINITION = "JourneyCustomerSession"
    id: str
    type: str


class JourneyActionMap(ResponseModel):
    DEFINITION = "JourneyActionMap"
    id: str
    version: int


class JourneyAction(ResponseModel):
    DEFINITION = "JourneyAction"
    id: str
    action_map: JourneyActionMap


class JourneyContext(ResponseModel):
    DEFINITION = "JourneyContext"
    customer: JourneyCustomer
    customer_session: JourneyCustomerSession | None = None
    triggering_action: JourneyAction | None = None


# ================================================================================================
# Agentless outbound message (POST /api/v2/conversations/messages/agentless)
# ================================================================================================
class TemplateParameter(RequestModel):
    DEFINITION = "TemplateParameter"
    id: str | None = None
    value: str | None = Field(default=None, repr=False)


class SendMessagingTemplateRequest(RequestModel):
    DEFINITION = "SendMessagingTemplateRequest"
    response_id: str | None = None
    body_parameters: list[TemplateParameter] | None = None
    parameters: list[TemplateParameter] | None = None  # deprecated spelling of bodyParameters
    header_parameters: list[TemplateParameter] | None = None
    button_url_parameters: list[TemplateParameter] | None = None


class SendAgentlessOutboundMessageRequest(RequestModel):
    """``fromAddress`` is the deploymentId for webmessaging, where ``externalContactId`` is required
    and ``toAddress`` unused."""

    DEFINITION = "SendAgentlessOutboundMessageRequest"
    from_address: str
    to_address: str | None = None
    external_contact_id: str | None = None
    to_address_messenger_type: MessengerType
    text_body: str | None = Field(default=None, repr=False)
    messaging_template: SendMessagingTemplateRequest | None = None
    use_existing_active_conversation: bool | None = None


class ConversationNotificationTemplateParameter(ResponseModel):
    DEFINITION = "ConversationNotificationTemplateParameter"
    name: str | None = None
    text: str = Field(default="", repr=False)


class ConversationNotificationTemplateBody(ResponseModel):
    DEFINITION = "ConversationNotificationTemplateBody"
    text: str | None = Field(default=None, repr=False)
    parameters: list[ConversationNotificationTemplateParameter] = Field(default_factory=list)


class ConversationContentNotificationTemplate(ResponseModel):
    """A template message as read back: ``id`` is ``cannedresponse@<responseId>`` for a Response
    Management response."""

    DEFINITION = "ConversationContentNotificationTemplate"
    id: str | None = None
    language: str | None = None
    body: ConversationNotificationTemplateBody = Field(default_factory=ConversationNotificationTemplateBody)


class ConversationMessageContent(ResponseModel):
    DEFINITION = "ConversationMessageContent"
    content_type: str
    template: ConversationContentNotificationTemplate | None = None


class ConversationNormalizedMessage(ResponseModel):
    DEFINITION = "ConversationNormalizedMessage"
    id: str | None = None
    type: str
    text: str | None = Field(default=None, repr=False)
    content: list[ConversationMessageContent] | None = None
    direction: str | None = None
    status: str | None = None
    originating_entity: str | None = None
    metadata: dict[str, str] | None = None


class MessageData(ResponseModel):
    """``textBody`` is REQ in the contract's older spec but dropped by SDK 269, so optional here."""

    DEFINITION = "MessageData"
    id: str | None = None
    name: str | None = None
    provider_message_id: str | None = None
    timestamp: datetime
    from_address: str | None = None
    to_address: str | None = None
    direction: str | None = None
    messenger_type: str | None = None
    status: str
    text_body: str | None = Field(default=None, repr=False)
    normalized_message: ConversationNormalizedMessage | None = None
    conversation_id: str | None = None
    self_uri: str | None = None


class SendAgentlessOutboundMessageResponse(ResponseModel):
    DEFINITION = "SendAgentlessOutboundMessageResponse"
    id: str | None = None
    conversation_id: str | None = None
    from_address: str | None = None
    to_address: str | None = None
    messenger_type: str | None = None
    use_existing_active_conversation: bool | None = None
    message: MessageData | None = None
    messaging_template: SendMessagingTemplateRequest | None = None
    text_body: str | None = Field(default=None, repr=False)
    timestamp: datetime | None = None
    user: AddressableEntityRef | None = None
    self_uri: str | None = None


# ================================================================================================
# Conversation (GET /api/v2/conversations/{id}; PATCH bodies of messages/cobrowse/chats)
# ================================================================================================
class ConversationStateRequest(RequestModel):
    """PATCH body ``{"state": "disconnected"}``: the contract's ``Conversation`` marks participants and
    startTime required, but Genesys accepts (and its SDK sends) only ``state``; disconnected is the
    only value it honours."""

    DEFINITION = "Conversation"
    state: Literal["disconnected"] = "disconnected"


class WrapupInput(RequestModel):
    DEFINITION = "WrapupInput"
    code: str | None = None
    name: str | None = None
    notes: str | None = Field(default=None, repr=False)
    tags: list[str] | None = None
    duration_seconds: int | None = None
    end_time: datetime | None = None
    provisional: bool | None = None
    disable_end_time_updates: bool | None = None


class MediaParticipantRequest(RequestModel):
    DEFINITION = "MediaParticipantRequest"
    state: ParticipantStateRequest | None = None
    wrapup: WrapupInput | None = None
    wrapup_skipped: bool | None = None
    recording: bool | None = None
    muted: bool | None = None
    held: bool | None = None
    confined: bool | None = None
    resume_time: datetime | None = None


class MessageDetails(ResponseModel):
    DEFINITION = "MessageDetails"
    message_id: str | None = None
    message_uri: str | None = Field(default=None, alias="messageURI")
    message_status: str | None = None
    message_segment_count: int | None = None
    message_time: datetime | None = None
    error_info: ErrorBody | None = None


class MessageCommunication(ResponseModel):
    """``participants[].messages[]`` of a Conversation: its ``id`` is the communicationId."""

    DEFINITION = "Message"
    id: str | None = None
    state: str | None = None
    initial_state: str | None = None
    direction: str | None = None
    disconnect_type: str | None = None
    connected_time: datetime | None = None
    disconnected_time: datetime | None = None
    provider: str | None = None
    type: str | None = None
    peer_id: str | None = None
    held: bool | None = None
    to_address: Address | None = None
    from_address: Address | None = None
    messages: list[MessageDetails] | None = None
    wrapup: Wrapup | None = None


class CobrowseCommunication(ResponseModel):
    DEFINITION = "Cobrowsesession"
    id: str | None = None
    state: str | None = None
    initial_state: str | None = None
    disconnect_type: str | None = None
    cobrowse_session_id: str | None = None
    cobrowse_role: str | None = None
    controlling: list[str] | None = None
    viewer_url: str | None = None
    provider: str | None = None
    peer_id: str | None = None
    connected_time: datetime | None = None
    disconnected_time: datetime | None = None


class ChatCommunication(ResponseModel):
    DEFINITION = "ConversationChat"
    id: str | None = None
    state: str | None = None
    initial_state: str | None = None
    direction: str | None = None
    disconnect_type: str | None = None
    room_id: str | None = None
    provider: str | None = None
    peer_id: str | None = None
    connected_time: datetime | None = None
    disconnected_time: datetime | None = None


class Participant(ResponseModel):
    DEFINITION = "Participant"
    id: str | None = None
    purpose: str | None = None
    participant_type: str | None = None
    user_id: str | None = None
    queue_id: str | None = None
    queue_name: str | None = None
    external_contact_id: str | None = None
    name: str | None = None
    address: str | None = None
    attributes: dict[str, str] | None = None
    wrapup_required: bool | None = None
    wrapup: Wrapup | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    connected_time: datetime | None = None
    messages: list[MessageCommunication] | None = None
    cobrowsesessions: list[CobrowseCommunication] | None = None
    chats: list[ChatCommunication] | None = None


class Conversation(ResponseModel):
    """``endTime`` is null while the conversation is active."""

    DEFINITION = "Conversation"
    id: str | None = None
    name: str | None = None
    start_time: datetime
    end_time: datetime | None = None
    participants: list[Participant]
    recording_state: str | None = None
    state: str | None = None
    divisions: list[ConversationDivisionMembership] | None = None
    utilization_label_id: str | None = None
    inactivity_timeout: datetime | None = None
    self_uri: str | None = None


# --- Media-specific conversations (messages / cobrowsesessions / chats) -------------------------
class MediaParticipant(ResponseModel):
    """Fields common to MessageMediaParticipant, CobrowseMediaParticipant and ChatMediaParticipant."""

    id: str | None = None
    name: str | None = None
    address: str | None = None
    start_time: datetime | None = None
    connected_time: datetime | None = None
    end_time: datetime | None = None
    purpose: str | None = None
    state: str | None = None
    direction: str | None = None
    disconnect_type: str | None = None
    held: bool | None = None
    wrapup_required: bool | None = None
    wrapup: Wrapup | None = None
    user: DomainEntityRef | None = None
    queue: DomainEntityRef | None = None
    external_contact: DomainEntityRef | None = None
    attributes: dict[str, str] | None = None
    peer: str | None = None
    provider: str | None = None
    park_time: datetime | None = None
    resume_time: datetime | None = None
    error_info: ErrorInfo | None = None
    journey_context: JourneyContext | None = None


class MessageMediaParticipant(MediaParticipant):
    """Note: this shape has no communicationId; get it from :class:`Conversation`."""

    DEFINITION = "MessageMediaParticipant"
    to_address: Address | None = None
    from_address: Address | None = None
    messages: list[MessageDetails] | None = None
    type: str | None = None
    authenticated: bool | None = None


class CobrowseMediaParticipant(MediaParticipant):
    DEFINITION = "CobrowseMediaParticipant"
    cobrowse_session_id: str | None = None
    cobrowse_role: str | None = None
    controlling: list[str] | None = None
    viewer_url: str | None = None


class ChatMediaParticipant(MediaParticipant):
    DEFINITION = "ChatMediaParticipant"
    room_id: str | None = None
    avatar_image_url: str | None = None


class MediaConversation(ResponseModel):
    """Fields common to MessageConversation, CobrowseConversation and ChatConversation."""

    id: str | None = None
    name: str | None = None
    other_media_uris: list[str] | None = None
    divisions: list[ConversationDivisionMembership] | None = None
    utilization_label_id: str | None = None
    inactivity_timeout: datetime | None = None
    self_uri: str | None = None


class MessageConversation(MediaConversation):
    DEFINITION = "MessageConversation"
    participants: list[MessageMediaParticipant] = Field(default_factory=list)


class CobrowseConversation(MediaConversation):
    DEFINITION = "CobrowseConversation"
    participants: list[CobrowseMediaParticipant] = Field(default_factory=list)


class ChatConversation(MediaConversation):
    """A real create response was just ``{id, otherMediaUris: [], selfUri}``: no participants (None
    then; a GET of the chat lists them)."""

    DEFINITION = "ChatConversation"
    participants: list[ChatMediaParticipant] | None = None


# ================================================================================================
# Cobrowse (POST /api/v2/conversations/{id}/cobrowse, no body)
# ================================================================================================
class CobrowseWebMessagingSession(ResponseModel):
    DEFINITION = "CobrowseWebMessagingSession"
    id: str | None = None
    name: str | None = None
    join_code: str | None = None
    websocket_url: str | None = None
    date_offer_ends: datetime | None = None
    communication_type: str | None = None
    self_uri: str | None = None


# ================================================================================================
# Third-party chat (POST /api/v2/conversations/chats) and chat messages
# ================================================================================================
class CreateWebChatRequest(RequestModel):
    DEFINITION = "CreateWebChatRequest"
    queue_id: str
    provider: str
    skill_ids: list[str] | None = None
    language_id: str | None = None
    priority: int | None = None
    attributes: dict[str, str] | None = None
    customer_name: str | None = None


class CreateWebChatMessageRequest(RequestModel):
    DEFINITION = "CreateWebChatMessageRequest"
    body: str = Field(max_length=4000, repr=False)
    body_type: WebChatBodyType | None = None


# ================================================================================================
# Guest Chat API (/api/v2/webchat/guest/...)
# ================================================================================================
class WebChatRoutingTarget(RequestModel):
    """``targetAddress`` is the queue NAME, not its id."""

    DEFINITION = "WebChatRoutingTarget"
    target_type: Literal["QUEUE"] = "QUEUE"
    target_address: str
    skills: list[str] | None = None
    language: str | None = None
    priority: int | None = None


class GuestMemberInfo(RequestModel):
    DEFINITION = "GuestMemberInfo"
    display_name: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = Field(default=None, repr=False)
    phone_number: str | None = Field(default=None, repr=False)
    avatar_image_url: str | None = None
    custom_fields: dict[str, str] | None = Field(default=None, repr=False)  # the customer's CRM data


class CreateWebChatConversationRequest(RequestModel):
    DEFINITION = "CreateWebChatConversationRequest"
    organization_id: str
    deployment_id: str
    routing_target: WebChatRoutingTarget
    member_info: GuestMemberInfo
    member_auth_token: str | None = Field(default=None, repr=False)
    journey_context: JourneyContext | None = None


class WebChatMemberInfo(ResponseModel):
    """``id`` is the member's communicationId (the ``memberId`` of the member routes). The contract
    requires ``role``, but Genesys leaves it out where it only names a member (the create answer's
    ``member: {id}``, a message's ``sender: {id}``): only ``GET .../members/{memberId}`` says who it is."""

    DEFINITION = "WebChatMemberInfo"
    id: str | None = None
    display_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = Field(default=None, repr=False)
    phone_number: str | None = Field(default=None, repr=False)
    avatar_image_url: str | None = None
    custom_fields: dict[str, str] | None = None
    role: str | None = None
    join_date: datetime | None = None
    leave_date: datetime | None = None
    authenticated_guest: bool | None = None
    state: str | None = None


class CreateWebChatConversationResponse(ResponseModel):
    """``jwt`` authenticates every later guest call; ``eventStreamUri`` must be connected before the
    chat is routed."""

    DEFINITION = "CreateWebChatConversationResponse"
    id: str | None = None
    jwt: str | None = Field(default=None, repr=False)
    event_stream_uri: str | None = Field(default=None, repr=False)  # carries the JWT in its path
    member: WebChatMemberInfo | None = None


class WebChatConversation(ResponseModel):
    DEFINITION = "WebChatConversation"
    id: str | None = None
    name: str | None = None
    self_uri: str | None = None
    member: WebChatMemberInfo | None = None


class WebChatMessage(ResponseModel):
    DEFINITION = "WebChatMessage"
    id: str | None = None
    name: str | None = None
    conversation: WebChatConversation
    sender: WebChatMemberInfo
    body: str = Field(repr=False)
    body_type: str
    timestamp: datetime
    self_uri: str | None = None


class WebChatTyping(ResponseModel):
    DEFINITION = "WebChatTyping"
    id: str
    conversation: WebChatConversation
    sender: WebChatMemberInfo
    timestamp: datetime


class WebChatMessageEntityList(ResponseModel):
    DEFINITION = "WebChatMessageEntityList"
    entities: list[WebChatMessage] = Field(default_factory=list)
    page_size: int | None = None
    previous_page: str | None = None
    next: str | None = None
    self_uri: str | None = None


class WebChatMemberInfoEntityList(ResponseModel):
    DEFINITION = "WebChatMemberInfoEntityList"
    entities: list[WebChatMemberInfo] = Field(default_factory=list)
    page_size: int | None = None
    page_number: int | None = None
    total: int | None = None
    page_count: int | None = None
    first_uri: str | None = None
    last_uri: str | None = None
    next_uri: str | None = None
    previous_uri: str | None = None
    self_uri: str | None = None


# ================================================================================================
# Web messaging history (GET /api/v2/webmessaging/messages, guest JWT)
# ================================================================================================
class WebMessagingRecipient(ResponseModel):
    DEFINITION = "WebMessagingRecipient"
    first_name: str | None = None
    last_name: str | None = None
    nickname: str | None = None
    image: str | None = None


class WebMessagingChannel(ResponseModel):
    DEFINITION = "WebMessagingChannel"
    message_id: str | None = None
    time: datetime | None = None
    from_: WebMessagingRecipient | None = Field(default=None, alias="from")
    to: WebMessagingRecipient | None = None


class WebMessagingEventPresence(ResponseModel):
    DEFINITION = "WebMessagingEventPresence"
    type: str


class WebMessagingEvent(ResponseModel):
    DEFINITION = "WebMessagingEvent"
    event_type: str
    presence: WebMessagingEventPresence | None = None


class WebMessagingAttachment(ResponseModel):
    DEFINITION = "WebMessagingAttachment"
    id: str | None = None
    media_type: str | None = None
    url: str | None = None
    mime: str | None = None
    text: str | None = Field(default=None, repr=False)
    sha256: str | None = None
    filename: str | None = None
    file_size: int | None = None


class WebMessagingQuickReply(ResponseModel):
    DEFINITION = "WebMessagingQuickReply"
    text: str = Field(repr=False)
    payload: str = Field(repr=False)
    action: str | None = None
    image: str | None = None


class WebMessagingButtonResponse(ResponseModel):
    DEFINITION = "WebMessagingButtonResponse"
    id: str | None = None
    type: str | None = None
    text: str = Field(repr=False)
    payload: str = Field(repr=False)
    originating_message_id: str


class WebMessagingContent(ResponseModel):
    DEFINITION = "WebMessagingContent"
    content_type: str | None = None
    attachment: WebMessagingAttachment | None = None
    quick_reply: WebMessagingQuickReply | None = None
    button_response: WebMessagingButtonResponse | None = None


class WebMessagingMessage(ResponseModel):
    DEFINITION = "WebMessagingMessage"
    id: str | None = None
    channel: WebMessagingChannel | None = None
    type: str | None = None
    text: str | None = Field(default=None, repr=False)
    content: list[WebMessagingContent] | None = None
    events: list[WebMessagingEvent] | None = None
    direction: str | None = None
    originating_entity: str | None = None
    status: str | None = None
    metadata: dict[str, str] | None = None


class WebMessagingMessageEntityList(ResponseModel):
    DEFINITION = "WebMessagingMessageEntityList"
    entities: list[WebMessagingMessage] = Field(default_factory=list)
    page_size: int | None = None
    page_number: int | None = None
    total: int | None = None
    page_count: int | None = None


# ================================================================================================
# Finding what a lost request did: message reads and the analytics conversation detail query
# ================================================================================================
class MessageIdList(RequestModel):
    """Body of ``POST /conversations/messages/{id}/messages/bulk``: the contract's body is a bare JSON
    array of message ids (at most 1,000), not an object, so :meth:`to_wire` returns the array. No
    contract definition to check it against (the array is declared inline)."""

    message_ids: list[str] = Field(max_length=1000)

    def to_wire(self) -> list[str]:  # type: ignore[override]  # the body is an array
        return list(self.message_ids)


class TextMessageListing(ResponseModel):
    DEFINITION = "TextMessageListing"
    entities: list[MessageData] = Field(default_factory=list)


# --- POST /api/v2/analytics/conversations/details/query (request) --------------------------------
FilterType = Literal["and", "or"]
PredicateOperator = Literal["matches", "exists", "notExists"]
PropertyType = Literal["bool", "integer", "real", "date", "string", "uuid"]
# The dimensions Parley filters on (and the emulator evaluates); Genesys knows many more.
SegmentDimension = Literal[
    "addressFrom",
    "addressTo",
    "direction",
    "externalContactId",
    "mediaType",
    "messageType",
    "participantName",
    "provider",
    "purpose",
    "queueId",
    "userId",
]
ConversationDimension = Literal["conversationEnd", "conversationId"]
QueryOrder = Literal["asc", "desc", "unordered"]
QueryOrderBy = Literal["conversationStart", "conversationEnd"]


class SegmentDetailQueryPredicate(RequestModel):
    """``type`` dimension: ``dimension`` is compared with ``value``; ``type`` property: the
    participant attribute named ``property`` is (``propertyType`` says how to compare). Operator
    ``matches`` (the default) needs ``value``; ``exists`` / ``notExists`` test presence."""

    DEFINITION = "SegmentDetailQueryPredicate"
    type: Literal["dimension", "property"] | None = None
    dimension: SegmentDimension | None = None
    property_name: str | None = Field(default=None, alias="property")
    property_type: PropertyType | None = None
    operator: PredicateOperator | None = None
    value: str | None = None


class SegmentDetailQueryClause(RequestModel):
    DEFINITION = "SegmentDetailQueryClause"
    type: FilterType
    predicates: list[SegmentDetailQueryPredicate]


class SegmentDetailQueryFilter(RequestModel):
    """Predicates and clauses combined by ``type``; each is evaluated on one session (a
    participant's media leg), so an ``and`` filter needs one session that satisfies all of them."""

    DEFINITION = "SegmentDetailQueryFilter"
    type: FilterType
    clauses: list[SegmentDetailQueryClause] | None = None
    predicates: list[SegmentDetailQueryPredicate] | None = None


class ConversationDetailQueryPredicate(RequestModel):
    DEFINITION = "ConversationDetailQueryPredicate"
    type: Literal["dimension"] | None = None
    dimension: ConversationDimension | None = None
    operator: PredicateOperator | None = None
    value: str | None = None


class ConversationDetailQueryClause(RequestModel):
    DEFINITION = "ConversationDetailQueryClause"
    type: FilterType
    predicates: list[ConversationDetailQueryPredicate]


class ConversationDetailQueryFilter(RequestModel):
    DEFINITION = "ConversationDetailQueryFilter"
    type: FilterType
    clauses: list[ConversationDetailQueryClause] | None = None
    predicates: list[ConversationDetailQueryPredicate] | None = None


class PagingSpec(RequestModel):
    """``pageNumber`` starts at 1; ``pageSize`` is at most 100."""

    DEFINITION = "PagingSpec"
    page_size: int
    page_number: int


def format_interval(start: datetime, end: datetime) -> str:
    """An ISO-8601 ``start/end`` interval in UTC with milliseconds, as Genesys' examples write it."""

    def iso(moment: datetime) -> str:
        if moment.tzinfo is None:
            raise ValueError("interval bounds must be timezone-aware")
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    if end <= start:
        raise ValueError("an interval must end after it starts")
    return f"{iso(start)}/{iso(end)}"


def _dimension(name: SegmentDimension, value: str) -> SegmentDetailQueryPredicate:
    return SegmentDetailQueryPredicate(type="dimension", dimension=name, operator="matches", value=value)


class ConversationQuery(RequestModel):
    """Body of the conversation detail query. ``interval`` (required) is ISO-8601 ``start/end``;
    results are the conversations that *started on a day touched by the interval* (Genesys keeps one
    index per day), so a caller that wants "started since T" checks ``conversationStart`` itself
    (:meth:`AnalyticsConversationQueryResponse.started_between`). Analytics is fed asynchronously: a
    conversation created a moment ago may not be listed yet, and a recent end may not show yet."""

    DEFINITION = "ConversationQuery"
    interval: str
    conversation_filters: list[ConversationDetailQueryFilter] | None = None
    segment_filters: list[SegmentDetailQueryFilter] | None = None
    order: QueryOrder | None = None
    order_by: QueryOrderBy | None = None
    paging: PagingSpec | None = None

    @classmethod
    def customer_conversations(
        cls,
        *,
        messenger_type: MessengerType,
        recipient: str,
        since: datetime,
        until: datetime,
        from_address: str | None = None,
        live_only: bool = False,
        page_size: int = 100,
        page_number: int = 1,
    ) -> ConversationQuery:
        """A customer's messaging conversations started between ``since`` and ``until`` (oldest
        first), as an agentless send addresses them: ``recipient`` is the ``externalContactId`` for
        webmessaging and the ``toAddress`` (``addressTo``) otherwise; ``from_address`` (deployment id,
        number, integration id) narrows them to one sender. ``live_only``: not ended
        (``conversationEnd`` notExists)."""
        recipient_dimension: SegmentDimension = "externalContactId" if messenger_type == "webmessaging" else "addressTo"
        predicates = [
            _dimension("mediaType", "message"),
            _dimension("messageType", messenger_type),
            _dimension(recipient_dimension, recipient),
        ]
        if from_address is not None:
            predicates.append(_dimension("addressFrom", from_address))
        live = ConversationDetailQueryPredicate(type="dimension", dimension="conversationEnd", operator="notExists")
        return cls(
            interval=format_interval(since, until),
            segment_filters=[SegmentDetailQueryFilter(type="and", predicates=predicates)],
            conversation_filters=[ConversationDetailQueryFilter(type="and", predicates=[live])] if live_only else None,
            order="asc",
            order_by="conversationStart",
            paging=PagingSpec(page_size=page_size, page_number=page_number),
        )

    @classmethod
    def with_participant_attribute(
        cls,
        name: str,
        value: str,
        *,
        since: datetime,
        until: datetime,
        live_only: bool = False,
        page_size: int = 100,
        page_number: int = 1,
    ) -> ConversationQuery:
        """Conversations started between ``since`` and ``until`` with a participant whose attribute
        ``name`` is ``value`` (e.g. a third-party chat created with ``parley_command_id``)."""
        predicate = SegmentDetailQueryPredicate(
            type="property", property_name=name, property_type="string", operator="matches", value=value
        )
        live = ConversationDetailQueryPredicate(type="dimension", dimension="conversationEnd", operator="notExists")
        return cls(
            interval=format_interval(since, until),
            segment_filters=[SegmentDetailQueryFilter(type="and", predicates=[predicate])],
            conversation_filters=[ConversationDetailQueryFilter(type="and", predicates=[live])] if live_only else None,
            order="asc",
            order_by="conversationStart",
            paging=PagingSpec(page_size=page_size, page_number=page_number),
        )


# --- POST /api/v2/analytics/conversations/details/query (response) -------------------------------
class AnalyticsConversationSegment(ResponseModel):
    DEFINITION = "AnalyticsConversationSegment"
    segment_start: datetime | None = None
    segment_end: datetime | None = None
    segment_type: str | None = None
    disconnect_type: str | None = None
    queue_id: str | None = None
    conference: bool | None = None
    wrap_up_code: str | None = None


class AnalyticsSession(ResponseModel):
    """One media leg of a participant. Third-party chats: ``provider`` is the creator's and
    ``roomId`` is ``NONE`` (no chat room exists)."""

    DEFINITION = "AnalyticsSession"
    session_id: str | None = None
    media_type: str | None = None
    message_type: str | None = None
    direction: str | None = None
    address_from: str | None = None
    address_to: str | None = None
    provider: str | None = None
    room_id: str | None = None
    peer_id: str | None = None
    cobrowse_role: str | None = None
    segments: list[AnalyticsConversationSegment] | None = None


class AnalyticsParticipantWithoutAttributes(ResponseModel):
    DEFINITION = "AnalyticsParticipantWithoutAttributes"
    participant_id: str | None = None
    participant_name: str | None = None
    purpose: str | None = None
    external_contact_id: str | None = None
    user_id: str | None = None
    sessions: list[AnalyticsSession] | None = None


class AnalyticsConversationWithoutAttributes(ResponseModel):
    """``conversationEnd`` is absent while the conversation is live (or its end is not indexed yet)."""

    DEFINITION = "AnalyticsConversationWithoutAttributes"
    conversation_id: str | None = None
    conversation_start: datetime | None = None
    conversation_end: datetime | None = None
    originating_direction: str | None = None
    conversation_initiator: str | None = None
    customer_participation: bool | None = None
    division_ids: list[str] | None = None
    participants: list[AnalyticsParticipantWithoutAttributes] | None = None


class AnalyticsConversationQueryResponse(ResponseModel):
    """``totalHits`` counts every match; ``conversations`` is one page (absent when nothing matched)."""

    DEFINITION = "AnalyticsConversationQueryResponse"
    conversations: list[AnalyticsConversationWithoutAttributes] = Field(default_factory=list)
    total_hits: int | None = None

    def started_between(self, since: datetime, until: datetime) -> list[AnalyticsConversationWithoutAttributes]:
        """This page's conversations whose start is in ``[since, until)`` (the query matches whole days)."""
        return [
            c for c in self.conversations if c.conversation_start is not None and since <= c.conversation_start < until
        ]


# ================================================================================================
# OAuth (login host; not in the Platform contract, snake_case on the wire)
# ================================================================================================
class OAuthModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


class OAuthToken(OAuthModel):
    """Response of ``POST /oauth/token`` (client credentials: no refresh token)."""

    access_token: str = Field(repr=False)
    token_type: str = "bearer"
    expires_in: int


class OAuthError(OAuthModel):
    """Error body of the token endpoint: ``{error, description, error_description}``, not ErrorBody.

    Genesys' login host sends both ``description`` and RFC 6749's ``error_description`` (same text)."""

    error: str = ""
    description: str = ""
    error_description: str = ""
