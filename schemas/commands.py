"""The typed commands producers put on ``parley:commands``: the only contract with producers.

Every command is one JSON object with a ``type``; :data:`Command` is the discriminated union of all
of them. Models are strict (unknown fields rejected) and bounded (see :mod:`schemas.limits`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, field_validator, model_validator

from schemas.common import (
    Address,
    GenesysId,
    Key,
    Lane,
    NonEmptyText,
    OrgAlias,
    StrictModel,
    Timestamp,
    json_bytes,
    utf8_len,
)
from schemas.limits import (
    CUSTOM_ATTRIBUTES_MAX_BYTES,
    GUESTCHAT_TEXT_MAX_CHARS,
    OTHER_TEXT_MAX_CHARS,
    SMS_TEXT_MAX_CHARS,
    WEBMESSAGING_AGENTLESS_MAX_CHARS,
    WEBMESSAGING_TEXT_MAX_BYTES,
)


class Envelope(StrictModel):
    """Fields every command carries."""

    idempotency_key: Key = Field(description="Same key (per org and type) = one effect, however often sent.")
    org: OrgAlias = Field(default="default", description="Alias of the Genesys org/credentials to use.")
    correlation_id: Key | None = Field(default=None, description="Echoed on every event about this command.")
    expires_at: Timestamp | None = Field(
        default=None, description="ISO-8601 with offset; after it the command is not executed."
    )
    lane: Lane = Field(
        default=Lane.normal,
        description="high, normal or bulk: which commands take the org's Genesys request budget first when it "
        "is the bottleneck (not chat.create's routing priority).",
    )

    @property
    def targets(self) -> dict[str, str]:
        """Ids that identify what the command acts on; safe to show (no customer text)."""
        return {}


class Channel(StrEnum):
    webmessaging = "webmessaging"
    sms = "sms"
    whatsapp = "whatsapp"
    open = "open"


_TEXT_CHAR_LIMITS = {
    Channel.sms: SMS_TEXT_MAX_CHARS,
    Channel.whatsapp: OTHER_TEXT_MAX_CHARS,
    Channel.open: OTHER_TEXT_MAX_CHARS,
    Channel.webmessaging: WEBMESSAGING_AGENTLESS_MAX_CHARS,
}


def _check_text_bytes(text: str, limit: int = WEBMESSAGING_TEXT_MAX_BYTES) -> str:
    size = utf8_len(text)
    if size > limit:
        raise ValueError(f"text is {size} bytes in UTF-8; the limit is {limit} bytes")
    return text


_ParameterId = Annotated[str, Field(min_length=1, max_length=256)]
_ParameterValue = Annotated[str, Field(max_length=1024)]


class MessagingTemplate(StrictModel):
    """A Genesys Response Management messaging template (``SendMessagingTemplateRequest``): WhatsApp
    business messages outside the customer's 24-hour window must be an approved template."""

    response_id: GenesysId = Field(description="Id of the Response Management response holding the template.")
    parameters: dict[_ParameterId, _ParameterValue] | None = Field(
        default=None, max_length=50, description="Body parameter substitutions: placeholder id -> value."
    )


class MessageSend(Envelope):
    """A proactive message to a customer, into their live conversation when there is one.

    WhatsApp sends a ``template`` (Genesys requires ``messagingTemplate`` for it), the other channels
    ``text``."""

    type: Literal["message.send"]
    channel: Channel
    from_address: Address = Field(description="Deployment id for webmessaging; number or integration id otherwise.")
    to_address: Address | None = Field(default=None, description="Recipient; not used for webmessaging.")
    external_contact_id: GenesysId | None = Field(default=None, description="Required for webmessaging.")
    text: NonEmptyText | None = Field(default=None, description="The message; required except for whatsapp.")
    template: MessagingTemplate | None = Field(default=None, description="Required for whatsapp, and only for it.")
    conversation_id: GenesysId | None = Field(default=None, description="Send into this conversation.")

    @model_validator(mode="after")
    def _channel_rules(self) -> MessageSend:
        if self.channel is Channel.whatsapp:
            if self.template is None:
                raise ValueError(
                    "template is required when channel is whatsapp: Genesys refuses a WhatsApp agentless message "
                    "without a messaging template (template.response_id = a Response Management response)"
                )
            if self.text is not None:
                raise ValueError("text is not used for whatsapp: the template's content is what the customer gets")
        elif self.template is not None:
            raise ValueError(f"template only applies to channel whatsapp, not {self.channel.value}")
        elif self.text is None:
            raise ValueError(f"text is required when channel is {self.channel.value}")
        if self.channel is Channel.webmessaging:
            if self.external_contact_id is None:
                raise ValueError("external_contact_id is required when channel is webmessaging")
            if self.to_address is not None:
                raise ValueError(
                    "to_address is not used for webmessaging; identify the customer by external_contact_id"
                )
            _check_text_bytes(self.text or "")
        elif self.to_address is None:
            raise ValueError(f"to_address is required when channel is {self.channel.value}")
        limit = _TEXT_CHAR_LIMITS[self.channel]
        if self.text is not None and len(self.text) > limit:
            raise ValueError(f"text is {len(self.text)} characters; {self.channel.value} allows at most {limit}")
        return self

    @property
    def targets(self) -> dict[str, str]:
        out = {"channel": self.channel.value, "from_address": self.from_address}
        if self.external_contact_id:
            out["external_contact_id"] = self.external_contact_id
        if self.conversation_id:
            out["conversation_id"] = self.conversation_id
        return out


class Wrapup(StrictModel):
    code: GenesysId
    notes: str | None = Field(default=None, max_length=1000)


class ConversationEnd(Envelope):
    """Disconnect a conversation from the backend and verify it reads disconnected."""

    type: Literal["conversation.end"]
    conversation_id: GenesysId
    wrapup: Wrapup | None = None

    @property
    def targets(self) -> dict[str, str]:
        return {"conversation_id": self.conversation_id}


class ChatCreate(Envelope):
    """A third-party chat work item on a queue (routing only; messages travel in your own system)."""

    type: Literal["chat.create"]
    queue_id: GenesysId
    provider: Annotated[str, Field(min_length=1, max_length=256)]
    customer_name: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    attributes: dict[Annotated[str, Field(max_length=256)], Annotated[str, Field(max_length=2048)]] | None = None
    skill_ids: list[GenesysId] | None = Field(default=None, max_length=50)
    language_id: GenesysId | None = None
    priority: int | None = Field(default=None, ge=0, le=100_000_000)

    @property
    def targets(self) -> dict[str, str]:
        return {"queue_id": self.queue_id}


class CobrowseStart(Envelope):
    """Start (or return the live) cobrowse session in a conversation."""

    type: Literal["cobrowse.start"]
    conversation_id: GenesysId

    @property
    def targets(self) -> dict[str, str]:
        return {"conversation_id": self.conversation_id}


class CobrowseEnd(Envelope):
    type: Literal["cobrowse.end"]
    conversation_id: GenesysId

    @property
    def targets(self) -> dict[str, str]:
        return {"conversation_id": self.conversation_id}


class GuestProtocol(StrEnum):
    webmessaging = "webmessaging"
    guestchat = "guestchat"


class _GuestCommand(Envelope):
    session_key: Key = Field(description="The producer's id of the customer session.")

    @property
    def targets(self) -> dict[str, str]:
        return {"session_key": self.session_key}


def _bounded_attributes(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is not None and json_bytes(value) > CUSTOM_ATTRIBUTES_MAX_BYTES:
        raise ValueError(f"custom attributes exceed {CUSTOM_ATTRIBUTES_MAX_BYTES} bytes as JSON")
    return value


class GuestStart(_GuestCommand):
    """Start a guest session whose websocket the guest worker holds until it ends."""

    type: Literal["guest.start"]
    protocol: GuestProtocol = GuestProtocol.webmessaging
    deployment_id: GenesysId
    origin: Annotated[str, Field(max_length=512, pattern=r"^https?://[^\s/]+$")] | None = None
    custom_attributes: dict[str, str] | None = None
    organization_id: GenesysId | None = None
    queue_name: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    display_name: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    custom_fields: dict[str, str] | None = None
    first_message: NonEmptyText | None = None

    _attrs = field_validator("custom_attributes", "custom_fields")(_bounded_attributes)

    @model_validator(mode="after")
    def _protocol_rules(self) -> GuestStart:
        if self.protocol is GuestProtocol.guestchat:
            missing = [f for f in ("organization_id", "queue_name", "display_name") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"protocol guestchat requires {', '.join(missing)}")
            if self.custom_attributes is not None:
                raise ValueError("custom_attributes is for webmessaging; guestchat takes custom_fields")
        else:
            extra = [f for f in ("organization_id", "queue_name", "display_name", "custom_fields") if getattr(self, f)]
            if extra:
                raise ValueError(f"{', '.join(extra)} only apply to protocol guestchat")
        if self.first_message is not None:
            _check_guest_text(self.first_message)
        return self


def _check_guest_text(text: str) -> str:
    _check_text_bytes(text)
    if len(text) > GUESTCHAT_TEXT_MAX_CHARS:
        raise ValueError(f"text is {len(text)} characters; the limit is {GUESTCHAT_TEXT_MAX_CHARS}")
    return text


class GuestSend(_GuestCommand):
    type: Literal["guest.send"]
    text: NonEmptyText

    _text = field_validator("text")(_check_guest_text)


class GuestTyping(_GuestCommand):
    type: Literal["guest.typing"]


class GuestEnd(_GuestCommand):
    type: Literal["guest.end"]


Command = Annotated[
    MessageSend
    | ConversationEnd
    | ChatCreate
    | CobrowseStart
    | CobrowseEnd
    | GuestStart
    | GuestSend
    | GuestTyping
    | GuestEnd,
    Field(discriminator="type"),
]
"""Any command; ``type`` selects the model."""

COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)

_MODELS: tuple[type[Envelope], ...] = (
    MessageSend, ConversationEnd, ChatCreate, CobrowseStart, CobrowseEnd, GuestStart, GuestSend, GuestTyping, GuestEnd,
)
COMMAND_MODELS: dict[str, type[Envelope]] = {
    m.model_fields["type"].annotation.__args__[0]: m for m in _MODELS  # type: ignore[union-attr]
}

GUEST_COMMAND_TYPES = frozenset(t for t in COMMAND_MODELS if t.startswith("guest."))
REST_COMMAND_TYPES = frozenset(COMMAND_MODELS) - GUEST_COMMAND_TYPES
