"""message.send: a proactive message into the customer's live conversation (seed 000).

Commands for one customer are serialized by a lease on the customer's natural key, so concurrent
sends never open two conversations. The state cache remembers the customer's live conversation;
with one known, Parley sends with ``useExistingActiveConversation``; without, it sends plainly and,
on 400 ``active.conversation`` (one is live after all), sends into it. When a previous attempt's
outcome is unknown, Parley first looks for a message it sent after that attempt began.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import redis

from genesys.errors import GenesysError
from genesys.models import MessageConversation
from parley import keys
from parley.state_cache import CustomerKey, LiveConversation
from schemas.commands import MessageSend
from schemas.events import CommandResult
from tasks.context import ExecutionContext, Refused, StagedWrite, handles
from tasks.handlers.reading import fetch_live

CUSTOMER_LEASE_WAIT_S = 10.0
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


def _sent_since(conv: MessageConversation, since: datetime, others: set[str]) -> str | None:
    """A message our side sent into ``conv`` at or after ``since`` that no other command claims.

    Sends to one customer are serialized, so such a message can only be the one the dead attempt
    sent; ``others`` are the ids that completed commands recorded as theirs.
    """
    for participant in conv.participants or []:
        if participant.purpose not in SENDER_PURPOSES:
            continue
        for leg in participant.messages or []:
            if leg.message_time is not None and leg.message_time >= since and leg.message_id not in others:
                return leg.message_id
    return None


def _confirmed(ctx: ExecutionContext, key: CustomerKey, live: LiveConversation | None) -> LiveConversation | None:
    """A stale cache entry is checked with Genesys: an ended conversation is forgotten, a live one renewed."""
    if live is None or not live.is_stale(timedelta(seconds=ctx.settings.state_max_age_s)):
        return live
    if fetch_live(ctx, live.conversation_id) is None:
        ctx.state.contradicted(live.conversation_id, key)
        return None
    renewed = LiveConversation(conversation_id=live.conversation_id, communication_id=live.communication_id)
    ctx.state.put_conversation(key, renewed)
    return renewed


def _already_sent(ctx: ExecutionContext, live: LiveConversation | None) -> CommandResult | None:
    """Lookup before acting again: did the attempt that died send the message after all?"""
    if live is None or ctx.previous_attempt_started_at is None:
        return None  # Genesys offers client credentials no search of a customer's conversations
    try:
        conv = ctx.genesys.get_message_conversation(live.conversation_id)
    except GenesysError as exc:
        if exc.status == 404:
            return None
        raise
    others = set(ctx.redis.hkeys(keys.sent_messages(live.conversation_id)))
    message_id = _sent_since(conv, ctx.previous_attempt_started_at, others)
    if message_id is None:
        return None
    return CommandResult(conversation_id=live.conversation_id, message_id=message_id, reused=True,
                         note="found the message sent by an earlier attempt; not sent again")


@handles("message.send")
def send_message(ctx: ExecutionContext, command: MessageSend) -> CommandResult:
    refuse_third_party_chat(ctx, command.conversation_id)
    key = CustomerKey.for_message(org=command.org, channel=command.channel.value, from_address=command.from_address,
                                  to_address=command.to_address, external_contact_id=command.external_contact_id)
    # Held until the command's outcome commits, with the cache update below: the next send to this
    # customer then finds the conversation this one opened.
    ctx.hold(key, timeout_s=CUSTOMER_LEASE_WAIT_S)
    live = _confirmed(ctx, key, ctx.state.get_conversation(key))
    if ctx.recovering:
        found = _already_sent(ctx, live)
        if found is not None:
            return found
    use_existing = live is not None or command.conversation_id is not None
    try:
        response = _send(ctx, command, use_existing)
    except GenesysError as exc:
        if exc.status != 400 or exc.code != "active.conversation" or use_existing:
            raise
        use_existing = True  # a conversation is live after all (opened outside Parley, or cache lost)
        response = _send(ctx, command, use_existing)
    if live is not None and response.conversation_id != live.conversation_id:
        ctx.state.contradicted(live.conversation_id, key)  # the cached one had ended
    if response.conversation_id:
        now_live = LiveConversation(conversation_id=response.conversation_id)
        ctx.on_success(lambda pipe: ctx.state.put_conversation(key, now_live, pipe))
        if response.id:
            ctx.on_success(_claim_message(ctx, response.conversation_id, response.id))
    return CommandResult(conversation_id=response.conversation_id, message_id=response.id,
                         reused=use_existing and (live is None or response.conversation_id == live.conversation_id))


def _send(ctx: ExecutionContext, command: MessageSend, use_existing: bool):
    return ctx.genesys.send_agentless(
        from_address=command.from_address, messenger_type=command.channel.value, text=command.text,
        to_address=command.to_address, external_contact_id=command.external_contact_id,
        use_existing_active_conversation=use_existing,
    )


def _claim_message(ctx: ExecutionContext, conversation_id: str, message_id: str) -> StagedWrite:
    """Record the message as this command's, so a recovery lookup by another command never takes it."""
    sent = keys.sent_messages(conversation_id)

    def write(pipe: redis.client.Pipeline) -> None:
        pipe.hset(sent, message_id, ctx.command_id)
        pipe.expire(sent, ctx.settings.idempotency_retention_s)

    return write
