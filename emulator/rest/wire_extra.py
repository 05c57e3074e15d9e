"""Wire models the emulator needs that :mod:`genesys.models` does not have (yet).

Same conventions as there (camelCase aliases, ``DEFINITION`` naming the contract definition);
they belong in :mod:`genesys.models` once the client uses these operations.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from genesys.models import (
    ChatConversation,
    CobrowseConversation,
    ConversationQuery,
    RequestModel,
    ResponseModel,
    SendMessagingTemplateRequest,
)


class CreateOutboundMessagingConversationRequest(RequestModel):
    DEFINITION = "CreateOutboundMessagingConversationRequest"
    queue_id: str
    to_address: str
    to_address_messenger_type: Literal["sms", "open", "whatsapp"]
    use_existing_conversation: bool | None = None
    external_contact_id: str | None = None
    use_user_from_address: bool | None = None


class CreateOutboundMessagingConversationResponse(ResponseModel):
    DEFINITION = "CreateOutboundMessagingConversationResponse"
    id: str | None = None
    self_uri: str | None = None


class AdditionalMessage(RequestModel):
    DEFINITION = "AdditionalMessage"
    text_body: str = Field(repr=False)
    media_ids: list[str] | None = None
    messaging_template: SendMessagingTemplateRequest | None = None


class ConversationEventTyping(RequestModel):
    DEFINITION = "ConversationEventTyping"
    type: Literal["On"]
    duration: int | None = None


class MessageTypingEventRequest(RequestModel):
    DEFINITION = "MessageTypingEventRequest"
    typing: ConversationEventTyping
    date_sent: str | None = None


class _Listing(ResponseModel):
    page_size: int | None = None
    page_number: int | None = None
    total: int | None = None
    page_count: int | None = None
    self_uri: str | None = None


class ChatConversationEntityListing(_Listing):
    DEFINITION = "ChatConversationEntityListing"
    entities: list[ChatConversation] = Field(default_factory=list)


class CobrowseConversationEntityListing(_Listing):
    DEFINITION = "CobrowseConversationEntityListing"
    entities: list[CobrowseConversation] = Field(default_factory=list)


class ConversationQueryBody(ConversationQuery):
    """The detail query as Genesys accepts it: also aggregations and evaluation, survey and resolution
    filters, which the emulator does not evaluate (a query using them is refused, not answered wrongly)."""

    DEFINITION = "ConversationQuery"
    aggregations: list[dict[str, Any]] | None = None
    evaluation_filters: list[dict[str, Any]] | None = None
    survey_filters: list[dict[str, Any]] | None = None
    resolution_filters: list[dict[str, Any]] | None = None


class ConversationPatchRequest(RequestModel):
    """The PATCH body of ``/conversations/{messages,chats,cobrowsesessions}/{id}``: the contract's
    ``Conversation``, every property accepted (a client may send back the conversation it read);
    only ``state: disconnected`` acts. Genesys does not enforce the read model's required
    ``participants``/``startTime`` on this body."""

    DEFINITION = "Conversation"
    id: str | None = None
    name: str | None = None
    external_tag: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    address: str | None = None
    participants: list[dict[str, Any]] | None = None
    conversation_ids: list[str] | None = None
    max_participants: int | None = None
    recording_state: Literal["ACTIVE", "PAUSED", "NONE"] | None = None
    state: Literal["alerting", "dialing", "contacting", "offering", "connected", "disconnected", "terminated",
                   "converting", "uploading", "transmitting", "parked", "none"] | None = None
    divisions: list[dict[str, Any]] | None = None
    recent_transfers: list[dict[str, Any]] | None = None
    secure_pause: bool | None = None
    utilization_label_id: str | None = None
    inactivity_timeout: datetime | None = None
    self_uri: str | None = None
