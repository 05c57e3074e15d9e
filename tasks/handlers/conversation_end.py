"""conversation.end: disconnect, then verify it reads disconnected (seed 002).

A PATCH answering 200 is not proof (the thread's "PATCH said 200 but nothing changed"), so Parley
reads the conversation back until it or the customer reads disconnected, or a deadline passes. Genesys
applies a disconnect eventually, and one has been seen never to apply: after a few reads still live the
disconnect is sent again (a bounded number of times) within the same deadline. The
disconnect goes first, without a read before it (Genesys answers 200 for an ended conversation too),
so a conversation Genesys ends at once costs two requests; it is reported ``already_ended`` when the
read-back shows it ended before the disconnect was sent. DELETE is never used: it needs a user token
(400 ``not.a.user``). With a wrap-up, the agents' participants are read first and wrapped up; without
one, a queue with mandatory wrap-up refuses the disconnect (400 ``conversation.error.wrapup.cannot.skip``
or ``...wrapup.code.required``) and the command fails with a hint to send ``wrapup``.
"""

from __future__ import annotations

import time

from genesys.errors import GenesysError
from genesys.models import Conversation, MediaParticipantRequest, WrapupInput
from schemas.commands import ConversationEnd
from schemas.common import utcnow
from schemas.events import CommandResult
from tasks.context import ExecutionContext, Refused, handles
from tasks.handlers.reading import is_ended, live_participants, participant_states

VERIFY_DELAYS_S = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
REISSUE_AFTER_READS = 3
"""Live reads after which the disconnect is sent again (Genesys is eventually consistent, and a PATCH
answering 200 has been seen to change nothing: seed 002)."""
MAX_REISSUES = 2
WRAPUP_REFUSALS = frozenset({"conversation.error.wrapup.cannot.skip", "conversation.error.wrapup.code.required"})
"""A queue with mandatory wrap-up refuses to end the agent's leg without a code."""


@handles("conversation.end")
def end_conversation(ctx: ExecutionContext, command: ConversationEnd) -> CommandResult:
    cid = command.conversation_id
    if command.wrapup is not None:
        conv = ctx.genesys.get_conversation(cid)
        if is_ended(conv):
            return _ended(ctx, conv, already_ended=True)
        _wrap_up_agents(ctx, conv, command)
    disconnect_sent = utcnow()
    if (ended := _disconnect(ctx, cid)) is not None:
        return _ended(ctx, ended, already_ended=True)
    final = _verify(ctx, cid)
    # Genesys' clock against ours; NTP keeps them far closer than a request's round trip.
    ended_before = final.end_time is not None and final.end_time < disconnect_sent
    return _ended(ctx, final, already_ended=ended_before)


def _disconnect(ctx: ExecutionContext, cid: str) -> Conversation | None:
    """Send the disconnect; the conversation when a read on the way shows it already ended."""
    try:
        ctx.genesys.patch_message_conversation(cid)
    except GenesysError as exc:
        if exc.status not in (400, 404) or exc.code in WRAPUP_REFUSALS:
            raise  # a wrap-up refusal is the queue's rule, not a wrong media: the hint says to send `wrapup`
        # Not a message conversation (or refused as one): disconnect each live participant instead.
        conv = ctx.genesys.get_conversation(cid)
        if is_ended(conv):
            return conv
        for participant in live_participants(conv):
            ctx.genesys.patch_conversation_participant(cid, participant.id)
    return None


def _ended(ctx: ExecutionContext, conv: Conversation, *, already_ended: bool) -> CommandResult:
    ctx.state.contradicted(conv.id)
    ctx.on_success(lambda pipe: ctx.state.mark_ended(conv.id, pipe))
    return CommandResult(conversation_id=conv.id, final_state="disconnected", already_ended=already_ended,
                         participant_states=participant_states(conv))


def _wrap_up_agents(ctx: ExecutionContext, conv: Conversation, command: ConversationEnd) -> None:
    assert command.wrapup is not None
    wrapup = WrapupInput(code=command.wrapup.code, notes=command.wrapup.notes)
    for participant in live_participants(conv):
        if participant.purpose == "agent":
            ctx.genesys.patch_conversation_participant(
                conv.id, participant.id, MediaParticipantRequest(state="disconnected", wrapup=wrapup))


def _verify(ctx: ExecutionContext, cid: str) -> Conversation:
    """Read back until ended. Every ``REISSUE_AFTER_READS`` live reads the disconnect is sent again (at
    most ``MAX_REISSUES`` times): a PATCH that answered 200 may have been lost inside Genesys, and
    ending an ended conversation is a harmless 200, so sending it again costs one request."""
    deadline = time.monotonic() + ctx.settings.end_verify_deadline_s
    delays = iter(VERIFY_DELAYS_S)
    reads = sends = 0
    while True:
        conv = ctx.genesys.get_conversation(cid)
        reads += 1
        if is_ended(conv):
            return conv
        delay = next(delays, VERIFY_DELAYS_S[-1])
        if time.monotonic() + delay > deadline:
            states = ", ".join(f"{k}={v}" for k, v in participant_states(conv).items())
            raise Refused(
                f"disconnect was accepted {sends + 1} times but the conversation still reads live after "
                f"{ctx.settings.end_verify_deadline_s:.0f}s and {reads} reads ({states})",
                "Genesys accepted the disconnect but did not apply it. Check that the OAuth client's role has "
                "conversation:communication:disconnect, then send conversation.end again (a new idempotency key); "
                "as a last resort POST /api/v2/conversations/{id}/disconnect tears it down with a system wrap-up.",
            )
        if reads % REISSUE_AFTER_READS == 0 and sends < MAX_REISSUES:
            sends += 1
            if (ended := _disconnect(ctx, cid)) is not None:
                return ended
        time.sleep(delay)  # waiting on Genesys' state: there is no event to await over REST
