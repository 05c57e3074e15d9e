"""chat.create: a third-party chat work item (seed 001), and why it is routing-only.

``POST /api/v2/conversations/chats`` creates a chat that Genesys routes to an agent and tracks, but
that has no chat room (``roomId`` NONE): text posted into it gets 404 ``chat.error.not.found``. The
success event says so, and Parley remembers the conversation so that a later ``message.send`` aimed
at it is refused with the explanation instead of being sent to fail.

Parley stamps the chat's customer participant with the attribute ``parley_command_id``. When an
earlier attempt's outcome is unknown, Parley does not create a second chat blind: once analytics has
caught up, it lists the provider's chats on the queue since the attempt and reads each one's
attributes. Found, it is this command's chat; listed and not found, none was created. If Genesys
refuses the lookup, the command fails with the attribute to look for and lets the operator decide.
"""

from __future__ import annotations

from genesys.models import (
    ConversationQuery,
    CreateWebChatRequest,
    PagingSpec,
    SegmentDetailQueryFilter,
    SegmentDetailQueryPredicate,
    format_interval,
)
from parley import keys
from schemas.commands import ChatCreate
from schemas.common import utcnow
from schemas.events import CommandResult
from tasks.context import ExecutionContext, handles
from tasks.handlers.reading import CLOCK_SKEW, await_analytics, conversations_listed, first_found, lookup_since

COMMAND_ID_ATTRIBUTE = "parley_command_id"
ROUTING_ONLY_NOTE = (
    "third-party chat: Genesys routes it to an agent and tracks its state and wrap-up, but it has no chat "
    "room (roomId NONE); carry the messages in your own chat system, or use guest.start for a Genesys chat"
)


@handles("chat.create")
def create_chat(ctx: ExecutionContext, command: ChatCreate) -> CommandResult:
    if ctx.recovering and (found := _created_earlier(ctx, command)) is not None:
        _remember(ctx, found)
        return CommandResult(conversation_id=found, routing_only=True, reused=True,
                             note=f"found the chat an earlier attempt created; not created again. {ROUTING_ONLY_NOTE}")
    attributes = {**(command.attributes or {}), COMMAND_ID_ATTRIBUTE: ctx.command_id}
    chat = ctx.genesys.create_third_party_chat(CreateWebChatRequest(
        queue_id=command.queue_id, provider=command.provider, customer_name=command.customer_name,
        attributes=attributes, skill_ids=command.skill_ids, language_id=command.language_id,
        priority=command.priority,
    ))
    _remember(ctx, chat.id)
    return CommandResult(conversation_id=chat.id, routing_only=True, note=ROUTING_ONLY_NOTE)


def _remember(ctx: ExecutionContext, conversation_id: str) -> None:
    ctx.redis.set(keys.third_party_chat(conversation_id), "1", ex=ctx.settings.idempotency_retention_s)


def _created_earlier(ctx: ExecutionContext, command: ChatCreate) -> str | None:
    """The chat an earlier attempt of this command created, by its ``parley_command_id`` attribute."""
    await_analytics(ctx, "the chat it may have created")
    since = lookup_since(ctx)
    until = utcnow() + CLOCK_SKEW
    predicates = [SegmentDetailQueryPredicate(type="dimension", dimension=name, operator="matches", value=value)
                  for name, value in (("mediaType", "chat"), ("provider", command.provider),
                                      ("queueId", command.queue_id))]

    def page(number: int) -> ConversationQuery:
        return ConversationQuery(
            interval=format_interval(since, until),
            segment_filters=[SegmentDetailQueryFilter(type="and", predicates=predicates)],
            order="asc", order_by="conversationStart", paging=PagingSpec(page_size=100, page_number=number))

    hint = (f"Look on queue {command.queue_id} for a chat whose attribute {COMMAND_ID_ATTRIBUTE}={ctx.command_id}; "
            "if there is none, send the command again with a new idempotency key. Giving the OAuth client "
            "analytics:conversationDetail:view lets Parley look by itself.")
    # Only chats created while the lost attempt ran can be its chat: a few, not the queue's whole day.
    created_by = (ctx.unknown_until or utcnow()) + CLOCK_SKEW
    listed = conversations_listed(ctx, page, since, hint, created_by=created_by)

    def stamped_by_us(conversation_id: str) -> str | None:
        conversation = ctx.genesys.get_conversation(conversation_id)
        stamped = any((p.attributes or {}).get(COMMAND_ID_ATTRIBUTE) == ctx.command_id
                      for p in conversation.participants or [])
        return conversation_id if stamped else None

    return first_found(ctx, (seen.conversation_id for seen in listed), stamped_by_us)
