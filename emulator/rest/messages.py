"""Messaging conversations: agentless sends, queue outbound, reads and sends on a communication.

A messaging conversation is identified by its natural key (messenger type, ``fromAddress``,
recipient), the recipient being the ``externalContactId`` for web messaging and ``toAddress``
otherwise. While one is alerting or connected, a new one for the same key is refused with 400
``active.conversation`` unless the agentless send asks ``useExistingActiveConversation``.
"""

from __future__ import annotations

import json
import re
import uuid

from starlette.responses import Response

from emulator import views
from emulator.errors import ApiError
from emulator.fixtures import Fixtures
from emulator.rest.api import Auth, Call, api_route, no_content, ok
from emulator.rest.bodies import parse_body, query_bool
from emulator.rest.conversations import conversation_of, patch_conversation, patch_participant
from emulator.rest.wire_extra import (
    AdditionalMessage,
    CreateOutboundMessagingConversationRequest,
    CreateOutboundMessagingConversationResponse,
    MessageTypingEventRequest,
)
from emulator.state.model import Conversation, Kind, Media, NaturalKey, Participant, StoredMessage, Template
from genesys.models import (
    MessageData,
    SendAgentlessOutboundMessageRequest,
    SendAgentlessOutboundMessageResponse,
    SendMessagingTemplateRequest,
    TextMessageListing,
)

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
DIGITS = re.compile(r"^\d{6,15}$")
WEBMESSAGING_TEXT_MAX = 4000  # "must be non-empty and under 4000 characters"
SMS_TEXT_MAX = 765
BULK_MAX = 1000  # "The max messages you can request in the body is 1,000."
TEXT_MAX = 2000
NOT_FOUND = "conversation.error.conversation.not.found"


def _invalid(field: str, value: str, allowed: str) -> ApiError:
    return ApiError(400, "invalid.value", message_params={"value": value[:100], "field": field, "allowed": allowed})


def _required(field: str) -> ApiError:
    return ApiError(400, "constraint.validation", message_params={"field": field})


def _too_long(text: str | None, limit: int) -> None:
    if text is not None and len(text) > limit:
        raise ApiError(400, "max.length.exceeded")


def _check_from_address(fixtures: Fixtures, messenger_type: str, from_address: str) -> None:
    """``fromAddress`` must be something the org owns: a deployment, a number, an integration."""
    known = {
        "webmessaging": fixtures.deployment(from_address, "webmessaging") is not None,
        "sms": from_address in fixtures.sms_numbers,
    }.get(messenger_type, fixtures.integration(from_address, messenger_type) is not None)
    if not known:
        raise _invalid("fromAddress", from_address, f"an {messenger_type} address of this organization")


def _check_to_address(messenger_type: str, to_address: str | None, *, sms_code: str = "invalid.value") -> str:
    if not to_address:
        raise _required("toAddress")
    if messenger_type == "sms" and not E164.match(to_address):
        if sms_code == "invalid.value":
            raise _invalid("toAddress", to_address, "an E.164 phone number")
        raise ApiError(400, sms_code)
    if messenger_type == "whatsapp" and not DIGITS.match(to_address):
        raise ApiError(400, "invalid.whatsapp.address")
    return to_address


def _check_contact(external_contact_id: str | None) -> None:
    if external_contact_id is None:
        return
    try:
        uuid.UUID(external_contact_id)
    except ValueError:
        raise _invalid("externalContactId", external_contact_id, "an external contact id") from None


def _agentless_key(fixtures: Fixtures, body: SendAgentlessOutboundMessageRequest) -> NaturalKey:
    """Validate an agentless request per messenger type; its conversation's natural key."""
    kind = body.to_address_messenger_type
    _check_from_address(fixtures, kind, body.from_address)
    _check_contact(body.external_contact_id)
    if kind == "webmessaging":
        if not body.external_contact_id:
            raise _required("externalContactId")
        if not body.text_body or len(body.text_body) >= WEBMESSAGING_TEXT_MAX:
            raise ApiError(400, "invalid.webmessaging.text.body")
        return kind, body.from_address, body.external_contact_id
    to_address = _check_to_address(kind, body.to_address)
    if kind == "sms":
        if not body.text_body:
            raise _required("textBody")
        _too_long(body.text_body, SMS_TEXT_MAX)
    elif kind == "whatsapp":
        # "This field is required when using WhatsApp messenger type": a WhatsApp business message
        # outside the customer's 24-hour window must be an approved template.
        template = body.messaging_template
        if template is None:
            raise _required("messagingTemplate")
        if not template.response_id:
            raise _required("messagingTemplate.responseId")
    elif not body.text_body:
        raise _required("textBody")
    _too_long(body.text_body, TEXT_MAX)
    return kind, body.from_address, to_address


def _template(request: SendMessagingTemplateRequest | None) -> Template | None:
    if request is None or not request.response_id:
        return None
    parameters = request.body_parameters or request.parameters or []
    return Template(request.response_id, tuple((p.id or "", p.value or "") for p in parameters))


async def post_agentless(call: Call) -> Response:
    normalized = query_bool(call.request, "useNormalizedMessage", False)
    body = await parse_body(call.request, SendAgentlessOutboundMessageRequest)
    key = _agentless_key(call.fixtures, body)
    conv, message = call.state.messaging.send_agentless(
        key=key,
        to_address=body.to_address if key[0] != "webmessaging" else None,
        external_contact_id=body.external_contact_id,
        text=body.text_body or "" if body.messaging_template is None else "",
        use_existing=bool(body.use_existing_active_conversation),
        template=_template(body.messaging_template),
    )
    data = views.message_data(conv, message)
    return ok(
        SendAgentlessOutboundMessageResponse(
            id=message.id,
            conversation_id=conv.id,
            from_address=body.from_address,
            to_address=data.to_address,
            messenger_type=body.to_address_messenger_type,
            use_existing_active_conversation=body.use_existing_active_conversation,
            message=data,
            text_body=None if normalized else message.text,
            messaging_template=body.messaging_template,
            timestamp=message.timestamp,
            self_uri=data.self_uri,
        )
    )


async def post_queue_outbound(call: Call) -> Response:
    """POST /api/v2/conversations/messages: outbound on a queue's address (never web messaging)."""
    body = await parse_body(call.request, CreateOutboundMessagingConversationRequest)
    fixtures = call.fixtures
    queue = fixtures.queue_by_id(body.queue_id)
    if queue is None:
        raise _invalid("queueId", body.queue_id, "a queue id of this organization")
    to_address = _check_to_address(body.to_address_messenger_type, body.to_address, sms_code="invalid.phone.number")
    if body.to_address_messenger_type != "sms" or queue.outbound_sms_address is None:
        raise ApiError(400, "queue.address.required")
    _check_contact(body.external_contact_id)
    conv = call.state.messaging.create_queue_outbound(
        key=("sms", queue.outbound_sms_address, to_address),
        queue=queue,
        to_address=to_address,
        external_contact_id=body.external_contact_id,
    )
    return ok(CreateOutboundMessagingConversationResponse(id=conv.id, self_uri=views.conversation_uri(conv)))


async def get_message_conversation(call: Call) -> Response:
    conv = conversation_of(call, kinds=(Kind.MESSAGING,))
    return ok(views.message_conversation(conv))


# --- reading messages back (is a message found in a conversation ours?) -------------------------------
def _message_data(call: Call, conv: Conversation, message: StoredMessage) -> MessageData:
    """``useNormalizedMessage=true`` drops the deprecated ``textBody`` (then only
    ``normalizedMessage.text`` carries the text)."""
    data = views.message_data(conv, message)
    if query_bool(call.request, "useNormalizedMessage", False):
        data.text_body = None
    return data


async def get_message(call: Call) -> Response:
    """GET .../messages/{conversationId}/messages/{messageId} -> MessageData; 404 ``not.found`` for an
    unknown conversation or a message it does not have."""
    conv = conversation_of(call, code="not.found", kinds=(Kind.MESSAGING,))
    message = conv.message(call.param("messageId"))
    if message is None:
        raise ApiError(404, "not.found")
    return ok(_message_data(call, conv, message))


async def _message_ids(call: Call) -> list[str]:
    """The bulk body: a JSON array of message ids (optional; at most 1,000)."""
    raw = await call.request.body()
    if not raw.strip():
        return []
    try:
        ids = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad.request") from None
    if not isinstance(ids, list):
        raise ApiError(400, "bad.request", message="The body is an array of message ids.")
    if not all(isinstance(i, str) for i in ids):
        raise _invalid("body", str(ids), "an array of message ids")
    if len(ids) > BULK_MAX:
        raise ApiError(400, "bad.request", message="The max messages you can request in the body is 1,000.")
    return ids


async def post_messages_bulk(call: Call) -> Response:
    """POST .../messages/{conversationId}/messages/bulk -> TextMessageListing of the ids the conversation
    has, in the order asked, each once (unknown ids are left out: a guess, Genesys does not document it)."""
    conv = conversation_of(call, code="not.found", kinds=(Kind.MESSAGING,))
    ids = await _message_ids(call)
    found = [m for m in (conv.message(i) for i in dict.fromkeys(ids)) if m is not None]
    return ok(TextMessageListing(entities=[_message_data(call, conv, m) for m in found]))


async def patch_message_conversation(call: Call) -> Response:
    return await patch_conversation(call, conversation_of(call, kinds=(Kind.MESSAGING,)), Media.MESSAGE)


async def patch_message_participant(call: Call) -> Response:
    conv = conversation_of(call, kinds=(Kind.MESSAGING,))
    return await patch_participant(call, conv, Media.MESSAGE, body_required=False)


async def post_communication_message(call: Call) -> Response:
    """Send on a live communication of a non-customer participant (normally the agent's)."""
    conv, sender = _live_sender(call)
    body = await parse_body(call.request, AdditionalMessage)
    _too_long(body.text_body, WEBMESSAGING_TEXT_MAX if conv.messenger_type == "webmessaging" else TEXT_MAX)
    message = call.state.conversations.add_message(conv, sender, body.text_body, kind="message.sent", by="client")
    return ok(views.message_data(conv, message))


async def post_communication_typing(call: Call) -> Response:
    _live_sender(call)
    await parse_body(call.request, MessageTypingEventRequest)
    return no_content()


def _live_sender(call: Call) -> tuple[Conversation, Participant]:
    conv = conversation_of(call, code="not.found", kinds=(Kind.MESSAGING,))
    found = conv.by_communication(call.param("communicationId"))
    if found is None:
        raise ApiError(404, "not.found")
    participant, comm = found
    if participant.purpose == "customer":
        raise ApiError(400, "bad.request", message="Messages are sent on an agent's communication, not the customer's.")
    if not comm.live or not conv.live:
        raise ApiError(400, "bad.request", message="The communication is disconnected.")
    return conv, participant


_CONV = "/api/v2/conversations/messages/{conversationId}"
_COMM = _CONV + "/communications/{communicationId}"
ROUTES = [
    api_route("/api/v2/conversations/messages/agentless", post_agentless, methods=["POST"], auth=Auth.CLIENT),
    api_route("/api/v2/conversations/messages", post_queue_outbound, methods=["POST"], auth=Auth.CLIENT),
    api_route(_CONV, get_message_conversation, methods=["GET"], auth=Auth.CLIENT),
    api_route(_CONV, patch_message_conversation, methods=["PATCH"], auth=Auth.CLIENT),
    api_route(_CONV + "/messages/bulk", post_messages_bulk, methods=["POST"], auth=Auth.CLIENT),
    api_route(_CONV + "/messages/{messageId}", get_message, methods=["GET"], auth=Auth.CLIENT),
    api_route(
        _CONV + "/participants/{participantId}",
        patch_message_participant,
        methods=["PATCH"],
        auth=Auth.CLIENT,
    ),
    api_route(_COMM + "/messages", post_communication_message, methods=["POST"], auth=Auth.CLIENT),
    api_route(_COMM + "/typing", post_communication_typing, methods=["POST"], auth=Auth.CLIENT),
]
