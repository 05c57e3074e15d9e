"""message.send: a proactive message into the customer's live conversation (seed 000).

Commands for one customer are serialized by a lease on the customer's natural key, so concurrent
sends never open two conversations. Every send says ``useExistingActiveConversation``: Genesys puts
the message into the customer's live conversation, or opens one when none is live, and its answer
names the conversation. So a send costs one request whatever Parley remembers; the state cache (the
customer's last conversation) is learned from those answers, and an answer naming another
conversation than the cached one says the cached one ended.

When an earlier attempt's outcome is unknown (its answer lost, its worker killed), the message may
be in Genesys already, so Parley looks before sending again (reference genesys-rest.md 2.8): in the
cached live conversation, then in every conversation Genesys analytics lists for the customer.
Analytics lists a new conversation only after a lag, so that second look waits until
``genesys_analytics_lag_s`` has passed since the attempt. A message is this command's when our side
sent it after the attempt began, its content is the command's, and no other command claimed it;
a message found or sent is claimed with the command's success. Where Genesys cannot tell (analytics
refused), the command fails with a hint rather than risk a second message to the customer.

A WhatsApp send is a Response Management template, not text. Genesys reads a template message back
with an empty ``textBody`` and ``normalizedMessage.content[].template`` = ``{id:
"cannedresponse@<responseId>", body: {parameters: [{name, text}]}}``, so recovery matches it on the
response id and the parameter values (two commands sending the same template with the same values
are interchangeable, as identical texts are). If an org's read-back left the parameters out, a
recovering send would find no match and send again: the limitation is the read-back's, not Parley's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import redis

from genesys.errors import GenesysError
from genesys.models import (
    ConversationQuery,
    MessageConversation,
    MessageData,
    SendAgentlessOutboundMessageResponse,
    SendMessagingTemplateRequest,
    TemplateParameter,
)
from parley import keys
from parley.state_cache import CustomerKey, LiveConversation
from schemas.commands import MessageSend
from schemas.common import utcnow
from schemas.events import CommandResult
from tasks.context import ExecutionContext, Refused, StagedWrite, handles
from tasks.handlers.reading import (
    CLOCK_SKEW,
    ConversationSeen,
    await_analytics,
    conversations_listed,
    first_found,
    lookup_since,
)

CUSTOMER_LEASE_WAIT_S = 10.0
LIVE_LOOKBACK = timedelta(days=3)
"""How far back a conversation still live when the attempt began may have started (web messaging
conversations idle out after days, not hours)."""
LOOKUP_REFUSED_HINT = (
    "An earlier attempt's answer was lost, so Parley must ask Genesys whether the message went out before "
    "sending it again, and Genesys refused the lookup. Give the OAuth client the permission "
    "analytics:conversationDetail:view (scope analytics or analytics:readonly). Until then, check the "
    "customer's conversation for this text and send the command again with a new idempotency key if it is missing."
)
SENDER_PURPOSES = frozenset({"api", "agent", "acd", "workflow", "external"})

THIRD_PARTY_HINT = (
    "POST /api/v2/conversations/chats creates a third-party chat: Genesys only routes it and tracks its "
    "state (roomId NONE); there is no chat room to post into, so Genesys would answer 404 chat.error.not.found. "
    "Carry the messages in your own chat system, or use guest.start for a real Genesys chat."
)


def refuse_third_party_chat(ctx: ExecutionContext, conversation_id: str | None) -> None:
    if conversation_id and ctx.redis.exists(keys.third_party_chat(conversation_id)):
        raise Refused(f"conversation {conversation_id} is a routing-only third-party chat; "
                      "Parley does not send text into it", THIRD_PARTY_HINT)


def _sent_since(conv: MessageConversation, since: datetime, claimed: set[str]) -> list[str]:
    """Ids of messages our side sent into ``conv`` at or after ``since`` that no command claimed."""
    return [
        leg.message_id
        for participant in conv.participants or [] if participant.purpose in SENDER_PURPOSES
        for leg in participant.messages or []
        if leg.message_id and leg.message_time is not None and leg.message_time >= since
        and leg.message_id not in claimed
    ]


Content = tuple[str, ...]
"""What a message says, comparable between a command and a read-back: ``("text", text)`` or
``("template", response_id, "id=value", ...)`` (parameters sorted)."""


def _command_content(command: MessageSend) -> Content:
    if command.template is not None:
        params = command.template.parameters or {}
        return ("template", command.template.response_id, *sorted(f"{k}={v}" for k, v in params.items()))
    assert command.text is not None  # validation requires text when there is no template
    return ("text", command.text)


def _content(message: MessageData) -> Content | None:
    normalized = message.normalized_message
    for part in (normalized.content or []) if normalized else []:
        if part.template is not None and part.template.id:
            response_id = part.template.id.rpartition("@")[2]  # "cannedresponse@<responseId>"
            params = sorted(f"{p.name}={p.text}" for p in part.template.body.parameters)
            return ("template", response_id, *params)
    text = _text(message)
    return ("text", text) if text is not None else None


def _own_message(ctx: ExecutionContext, conversation_id: str, since: datetime, content: Content) -> str | None:
    """The message our side sent into the conversation since ``since`` with ``content``, unclaimed.

    Time alone cannot tell two commands' messages to one customer apart; the content can (identical
    texts or templates are interchangeable: the customer got one message per command either way).
    """
    try:
        conv = ctx.genesys.get_message_conversation(conversation_id)
    except GenesysError as exc:
        if exc.status == 404:
            return None
        raise
    candidates = _sent_since(conv, since, set(ctx.redis.hkeys(keys.sent_messages(conversation_id))))
    if not candidates:
        return None
    listing = ctx.genesys.get_messages_bulk(conversation_id, candidates)
    contents = {m.id: _content(m) for m in listing.entities}
    return next((mid for mid in candidates if contents.get(mid) == content), None)


def _text(message: MessageData) -> str | None:
    if message.text_body is not None:
        return message.text_body
    return message.normalized_message.text if message.normalized_message else None


def _customer_conversations(ctx: ExecutionContext, command: MessageSend, since: datetime) -> list[ConversationSeen]:
    """The customer's conversations from this sender that were live at or after ``since``, per analytics."""
    recipient = command.external_contact_id if command.channel.value == "webmessaging" else command.to_address
    assert recipient is not None  # validation requires the one the channel uses
    until = utcnow() + CLOCK_SKEW

    def page(number: int) -> ConversationQuery:
        return ConversationQuery.customer_conversations(
            messenger_type=command.channel.value, recipient=recipient, from_address=command.from_address,
            since=since - LIVE_LOOKBACK, until=until, page_number=number)

    return conversations_listed(ctx, page, since, LOOKUP_REFUSED_HINT)


@dataclass(frozen=True)
class _Sent:
    conversation_id: str
    message_id: str
    live: bool


def _find_sent(ctx: ExecutionContext, command: MessageSend, live: LiveConversation | None) -> _Sent | None:
    """The message an earlier attempt sent, or None when Genesys shows it was not sent.

    Raises :class:`NotYet` while analytics may not list a conversation the attempt opened yet.
    """
    since = lookup_since(ctx)
    content = _command_content(command)
    if live is not None and (message_id := _own_message(ctx, live.conversation_id, since, content)):
        return _Sent(live.conversation_id, message_id, live=True)
    await_analytics(ctx, "the conversations it may have opened")
    others = {seen.conversation_id: seen for seen in _customer_conversations(ctx, command, since)
              if live is None or seen.conversation_id != live.conversation_id}

    def sent_into(conversation_id: str) -> _Sent | None:
        message_id = _own_message(ctx, conversation_id, since, content)
        return _Sent(conversation_id, message_id, live=not others[conversation_id].ended) if message_id else None

    return first_found(ctx, others, sent_into)


@handles("message.send")
def send_message(ctx: ExecutionContext, command: MessageSend) -> CommandResult:
    refuse_third_party_chat(ctx, command.conversation_id)
    key = CustomerKey.for_message(org=command.org, channel=command.channel.value, from_address=command.from_address,
                                  to_address=command.to_address, external_contact_id=command.external_contact_id)
    # Held until the command's outcome commits, with the cache update below: the next send to this
    # customer then finds the conversation this one opened.
    ctx.hold(key, timeout_s=CUSTOMER_LEASE_WAIT_S)
    live = ctx.state.get_conversation(key)
    if ctx.recovering and (sent := _find_sent(ctx, command, live)) is not None:
        # Claimed like a fresh send, so no other command's lookup can take it.
        ctx.on_success(_claim_message(ctx, sent.conversation_id, sent.message_id))
        if sent.live:
            found_live = LiveConversation(conversation_id=sent.conversation_id)
            ctx.on_success(lambda pipe: ctx.state.put_conversation(key, found_live, pipe))
        return CommandResult(conversation_id=sent.conversation_id, message_id=sent.message_id, reused=True,
                             note="found the message sent by an earlier attempt; not sent again")
    response = _send(ctx, command)
    if live is not None and response.conversation_id != live.conversation_id:
        ctx.state.contradicted(live.conversation_id, key)  # the cached one had ended
    if response.conversation_id:
        now_live = LiveConversation(conversation_id=response.conversation_id)
        ctx.on_success(lambda pipe: ctx.state.put_conversation(key, now_live, pipe))
        if response.id:
            ctx.on_success(_claim_message(ctx, response.conversation_id, response.id))
    return CommandResult(conversation_id=response.conversation_id, message_id=response.id,
                         reused=live is not None and response.conversation_id == live.conversation_id)


def _send(ctx: ExecutionContext, command: MessageSend) -> SendAgentlessOutboundMessageResponse:
    return ctx.genesys.send_agentless(
        from_address=command.from_address, messenger_type=command.channel.value, text=command.text,
        to_address=command.to_address, external_contact_id=command.external_contact_id,
        use_existing_active_conversation=True, messaging_template=_template(command),
    )


def _template(command: MessageSend) -> SendMessagingTemplateRequest | None:
    if command.template is None:
        return None
    params = [TemplateParameter(id=k, value=v) for k, v in (command.template.parameters or {}).items()]
    return SendMessagingTemplateRequest(response_id=command.template.response_id, body_parameters=params or None)


def _claim_message(ctx: ExecutionContext, conversation_id: str, message_id: str) -> StagedWrite:
    """Record the message as this command's, so a recovery lookup by another command never takes it."""
    sent = keys.sent_messages(conversation_id)

    def write(pipe: redis.client.Pipeline) -> None:
        pipe.hset(sent, message_id, ctx.command_id)
        pipe.expire(sent, ctx.settings.idempotency_retention_s)

    return write
