"""State rendered as Genesys' response bodies, with the wire models of :mod:`genesys.models`.

One conversation has several views, as in Genesys: the generic ``Conversation`` (where
``participants[].messages[].id`` is the communicationId), and the media views
``MessageConversation``, ``ChatConversation`` and ``CobrowseConversation`` (whose participants have
no communication ids). ``selfUri`` values are relative paths, as Genesys returns them.
"""

from __future__ import annotations

from emulator.state.model import (
    CobrowseSession,
    Communication,
    Conversation,
    Media,
    Participant,
    StoredMessage,
    Template,
)
from genesys import models as wire
from genesys.models import Address, DomainEntityRef, MessageDetails, Wrapup


def conversation_uri(conv: Conversation) -> str:
    return f"/api/v2/conversations/{conv.id}"


def message_uri(conv: Conversation, message: StoredMessage) -> str:
    return f"/api/v2/conversations/messages/{conv.id}/messages/{message.id}"


def _address(value: str | None) -> Address | None:
    if value is None:
        return None
    return Address(address_normalized=value, address_raw=value, address_displayable=value)


def _details(conv: Conversation, comm: Communication) -> list[MessageDetails]:
    return [
        MessageDetails(
            message_id=m.id,
            message_uri=message_uri(conv, m),
            message_status=m.status,
            message_segment_count=1,
            message_time=m.timestamp,
        )
        for m in conv.messages
        if m.communication_id == comm.id
    ]


# --- Conversation (GET /api/v2/conversations/{id}, PATCH answers) --------------------------------------
def conversation(conv: Conversation) -> wire.Conversation:
    return wire.Conversation(
        id=conv.id,
        start_time=conv.start_time,
        end_time=conv.end_time,
        participants=[_participant(conv, p) for p in conv.participants],
        recording_state="NONE",
        self_uri=conversation_uri(conv),
    )


def _participant(conv: Conversation, p: Participant) -> wire.Participant:
    return wire.Participant(
        id=p.id,
        purpose=p.purpose,
        participant_type="External" if p.purpose == "customer" else "Internal",
        user_id=p.user_id,
        queue_id=p.queue_id,
        queue_name=p.queue_name,
        external_contact_id=p.external_contact_id,
        name=p.name,
        address=p.address,
        attributes=p.attributes,
        wrapup_required=p.wrapup_required,
        wrapup=Wrapup(code=p.wrapup_code) if p.wrapup_code else None,
        start_time=p.start_time,
        end_time=p.end_time,
        connected_time=p.connected_time,
        messages=[_message_leg(conv, c) for c in p.comms(Media.MESSAGE)] or None,
        chats=[_chat_leg(c) for c in p.comms(Media.CHAT)] or None,
        cobrowsesessions=[_cobrowse_leg(c) for c in p.comms(Media.COBROWSE)] or None,
    )


def _message_leg(conv: Conversation, c: Communication) -> wire.MessageCommunication:
    return wire.MessageCommunication(
        id=c.id,
        state=c.state,
        initial_state=c.initial_state,
        direction=c.direction,
        disconnect_type=c.disconnect_type,
        connected_time=c.connected_time,
        disconnected_time=c.disconnected_time,
        type=c.messenger_type,
        held=False,
        to_address=_address(c.to_address),
        from_address=_address(c.from_address),
        messages=_details(conv, c),
    )


def _chat_leg(c: Communication) -> wire.ChatCommunication:
    return wire.ChatCommunication(
        id=c.id,
        state=c.state,
        initial_state=c.initial_state,
        direction=c.direction,
        disconnect_type=c.disconnect_type,
        room_id=c.room_id,
        provider=c.provider,
        connected_time=c.connected_time,
        disconnected_time=c.disconnected_time,
    )


def _cobrowse_leg(c: Communication) -> wire.CobrowseCommunication:
    return wire.CobrowseCommunication(
        id=c.id,
        state=c.state,
        initial_state=c.initial_state,
        disconnect_type=c.disconnect_type,
        cobrowse_session_id=c.cobrowse_session_id,
        cobrowse_role=c.cobrowse_role,
        controlling=[],
        provider=c.provider,
        connected_time=c.connected_time,
        disconnected_time=c.disconnected_time,
    )


# --- media views ------------------------------------------------------------------------------------
def _media_participant(p: Participant, leg: Communication) -> wire.MediaParticipant:
    return wire.MediaParticipant(
        id=p.id,
        name=p.name,
        address=p.address,
        start_time=p.start_time,
        connected_time=leg.connected_time,
        end_time=leg.disconnected_time,
        purpose=p.purpose,
        state=leg.state,
        direction=leg.direction,
        disconnect_type=leg.disconnect_type,
        held=False,
        wrapup_required=p.wrapup_required,
        user=DomainEntityRef(id=p.user_id) if p.user_id else None,
        queue=DomainEntityRef(id=p.queue_id, name=p.queue_name) if p.queue_id else None,
        external_contact=DomainEntityRef(id=p.external_contact_id) if p.external_contact_id else None,
        attributes=p.attributes,
        provider=leg.provider,
    )


def _legs(conv: Conversation, media: Media) -> list[tuple[Participant, Communication]]:
    """Each participant with its latest leg of ``media`` (participants without one are left out)."""
    return [(p, p.comms(media)[-1]) for p in conv.participants if p.comms(media)]


def message_conversation(conv: Conversation) -> wire.MessageConversation:
    return wire.MessageConversation(
        id=conv.id,
        participants=[
            wire.MessageMediaParticipant(
                **_media_participant(p, leg).model_dump(),
                type=leg.messenger_type,
                to_address=_address(leg.to_address),
                from_address=_address(leg.from_address),
                messages=_details(conv, leg),
            )
            for p, leg in _legs(conv, Media.MESSAGE)
        ],
        other_media_uris=[],
        self_uri=f"/api/v2/conversations/messages/{conv.id}",
    )


def chat_conversation(conv: Conversation) -> wire.ChatConversation:
    return wire.ChatConversation(
        id=conv.id,
        participants=[
            wire.ChatMediaParticipant(**_media_participant(p, leg).model_dump(), room_id=leg.room_id)
            for p, leg in _legs(conv, Media.CHAT)
        ],
        other_media_uris=[],
        self_uri=f"/api/v2/conversations/chats/{conv.id}",
    )


def chat_created(conv: Conversation) -> wire.ChatConversation:
    """The create answer: ``{id, otherMediaUris: [], selfUri}`` only, as captured from Genesys."""
    return wire.ChatConversation(id=conv.id, other_media_uris=[], self_uri=f"/api/v2/conversations/chats/{conv.id}")


def cobrowse_conversation(conv: Conversation) -> wire.CobrowseConversation:
    return wire.CobrowseConversation(
        id=conv.id,
        participants=[
            wire.CobrowseMediaParticipant(
                **_media_participant(p, leg).model_dump(),
                cobrowse_session_id=leg.cobrowse_session_id,
                cobrowse_role=leg.cobrowse_role,
                controlling=[],
            )
            for p, leg in _legs(conv, Media.COBROWSE)
        ],
        other_media_uris=[],
        self_uri=f"/api/v2/conversations/cobrowsesessions/{conv.id}",
    )


def cobrowse_session(conv: Conversation, session: CobrowseSession) -> wire.CobrowseWebMessagingSession:
    return wire.CobrowseWebMessagingSession(
        id=session.id,
        join_code=session.join_code,
        websocket_url=session.websocket_url,
        date_offer_ends=session.offer_ends,
        communication_type="Message",
        self_uri=f"/api/v2/conversations/{conv.id}/cobrowse/{session.id}",
    )


# --- messages ---------------------------------------------------------------------------------------
def _template_content(template: Template | None) -> list[wire.ConversationMessageContent] | None:
    """A template message reads back as Notification content naming ``cannedresponse@<responseId>``."""
    if template is None:
        return None
    body = wire.ConversationNotificationTemplateBody(parameters=[
        wire.ConversationNotificationTemplateParameter(name=name, text=value) for name, value in template.parameters
    ])
    notification = wire.ConversationContentNotificationTemplate(id=f"cannedresponse@{template.response_id}", body=body)
    return [wire.ConversationMessageContent(content_type="Notification", template=notification)]


def message_data(conv: Conversation, message: StoredMessage) -> wire.MessageData:
    found = conv.by_communication(message.communication_id)
    leg = found[1] if found else None
    outbound = message.direction == "outbound"
    return wire.MessageData(
        id=message.id,
        timestamp=message.timestamp,
        from_address=leg.from_address if leg else None,
        to_address=leg.to_address if leg else None,
        direction=message.direction,
        messenger_type=conv.messenger_type,
        status=message.status,
        text_body=message.text,  # required by the contract: empty for a template message
        normalized_message=wire.ConversationNormalizedMessage(
            id=message.id,
            type="Text" if message.template is None else "Structured",
            text=message.text if message.template is None else None,
            content=_template_content(message.template),
            direction="Outbound" if outbound else "Inbound",
            status="Sent" if outbound else "Delivered",
            originating_entity="Human",
        ),
        conversation_id=conv.id,
        self_uri=message_uri(conv, message),
    )


# --- Guest Chat -------------------------------------------------------------------------------------
def member(p: Participant, leg: Communication) -> wire.WebChatMemberInfo:
    info = p.member
    assert info is not None
    return wire.WebChatMemberInfo(
        id=leg.id,
        display_name=info.display_name,
        first_name=info.first_name,
        last_name=info.last_name,
        email=info.email,
        phone_number=info.phone_number,
        avatar_image_url=info.avatar_image_url,
        custom_fields=info.custom_fields,
        role=info.role,
        join_date=p.start_time,
        leave_date=leg.disconnected_time,
        authenticated_guest=False if info.role == "CUSTOMER" else None,
        state=leg.state.upper(),
    )


def web_chat_message(conv: Conversation, message: StoredMessage) -> wire.WebChatMessage:
    found = conv.by_communication(message.communication_id)
    assert found is not None
    return wire.WebChatMessage(
        id=message.id,
        conversation=wire.WebChatConversation(id=conv.id, self_uri=_guest_uri(conv)),
        sender=member(*found),
        body=message.text,
        body_type=message.body_type,
        timestamp=message.timestamp,
        self_uri=f"{_guest_uri(conv)}/messages/{message.id}",
    )


def _guest_uri(conv: Conversation) -> str:
    return f"/api/v2/webchat/guest/conversations/{conv.id}"
