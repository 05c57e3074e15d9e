"""chat.create: a third-party chat work item (seed 001), and why it is routing-only.

``POST /api/v2/conversations/chats`` creates a chat that Genesys routes to an agent and tracks, but
that has no chat room (``roomId`` NONE): text posted into it gets 404 ``chat.error.not.found``. The
success event says so, and Parley remembers the conversation so that a later ``message.send`` aimed
at it is refused with the explanation instead of being sent to fail.

Genesys offers no way to find a third-party chat by anything Parley could stamp on it, so when an
earlier attempt's outcome is unknown Parley does not create a second one blind: it fails with the
attribute to look for (``parley_command_id``) and lets the operator decide.
"""

from __future__ import annotations

from genesys.models import CreateWebChatRequest
from parley import keys
from schemas.commands import ChatCreate
from schemas.events import CommandResult
from tasks.context import ExecutionContext, Refused, handles

COMMAND_ID_ATTRIBUTE = "parley_command_id"
ROUTING_ONLY_NOTE = (
    "third-party chat: Genesys routes it to an agent and tracks its state and wrap-up, but it has no chat "
    "room (roomId NONE); carry the messages in your own chat system, or use guest.start for a Genesys chat"
)


@handles("chat.create")
def create_chat(ctx: ExecutionContext, command: ChatCreate) -> CommandResult:
    if ctx.recovering:
        raise Refused(
            "an earlier attempt may have created the chat (its outcome is unknown) and Genesys cannot be "
            "searched for it; not creating a possible duplicate",
            f"Look on queue {command.queue_id} for a chat whose attribute {COMMAND_ID_ATTRIBUTE}="
            f"{ctx.command_id}; if there is none, send the command again with a new idempotency key.",
        )
    attributes = {**(command.attributes or {}), COMMAND_ID_ATTRIBUTE: ctx.command_id}
    chat = ctx.genesys.create_third_party_chat(CreateWebChatRequest(
        queue_id=command.queue_id, provider=command.provider, customer_name=command.customer_name,
        attributes=attributes, skill_ids=command.skill_ids, language_id=command.language_id,
        priority=command.priority,
    ))
    ctx.redis.set(keys.third_party_chat(chat.id), "1", ex=ctx.settings.idempotency_retention_s)
    return CommandResult(conversation_id=chat.id, routing_only=True, note=ROUTING_ONLY_NOTE)
