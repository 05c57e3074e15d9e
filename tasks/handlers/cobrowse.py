"""cobrowse.start / cobrowse.end without 409s (seed 003).

One live cobrowse per conversation: commands on one conversation are serialized by a lease, a
second start returns the cached live session (its join code) instead of asking Genesys again, and
only ``POST /api/v2/conversations/{id}/cobrowse`` is used (the thread's
``POST /conversations/cobrowse`` does not exist). A 409 with no live cobrowse is a transient conflict
for the retry policy; a 409 because a live cobrowse exists whose join code Parley does not hold (a
crashed attempt, or one started outside Parley) ends that session and starts a fresh one, since a
join code cannot be read back from Genesys.
"""

from __future__ import annotations

from datetime import timedelta

from genesys.errors import GenesysError
from genesys.models import CobrowseWebMessagingSession
from parley.hints import CONVERSATION_ENDED
from parley.state_cache import CobrowseSession, ConversationKey
from schemas.commands import CobrowseEnd, CobrowseStart
from schemas.common import utcnow
from schemas.events import CommandResult
from tasks.context import ExecutionContext, Refused, handles
from tasks.handlers.reading import fetch_live, has_live_cobrowse, is_ended

CONVERSATION_LEASE_WAIT_S = 10.0


def _result(session: CobrowseSession, *, reused: bool, note: str | None = None) -> CommandResult:
    return CommandResult(
        conversation_id=session.conversation_id, cobrowse_session_id=session.cobrowse_session_id,
        join_code=session.join_code, websocket_url=session.websocket_url,
        date_offer_ends=session.date_offer_ends.isoformat() if session.date_offer_ends else None,
        reused=reused, note=note,
    )


def _cached(conversation_id: str, started: CobrowseWebMessagingSession) -> CobrowseSession:
    return CobrowseSession(conversation_id=conversation_id, cobrowse_session_id=started.id or "",
                           join_code=started.join_code or "", websocket_url=started.websocket_url or "",
                           date_offer_ends=started.date_offer_ends)


def _still_live(ctx: ExecutionContext, session: CobrowseSession) -> bool:
    """A cached session older than the max age is confirmed with Genesys (it may have been ended
    outside Parley); a dead one is forgotten so a fresh session is started."""
    if utcnow() - session.created_at <= timedelta(seconds=ctx.settings.state_max_age_s):
        return True
    conv = fetch_live(ctx, session.conversation_id)
    if conv is not None and has_live_cobrowse(conv):
        return True
    ctx.state.invalidate_cobrowse(session.conversation_id)
    return False


def _refuse_if_ended(ctx: ExecutionContext, cid: str) -> None:
    """A start answered 404 because the conversation ended (Parley ended it, or Genesys reads it ended)
    fails saying so; any other 404 (a wrong id) goes to the retry policy as it is."""
    if not ctx.state.ended(cid):
        try:
            ended = is_ended(ctx.genesys.get_conversation(cid))
        except GenesysError:
            return  # unknown to Genesys too, or unreadable now: the start's own 404 tells the truth
        if not ended:
            return
        ctx.state.mark_ended(cid)
    raise Refused(f"conversation {cid} ended before this command ran", CONVERSATION_ENDED)


@handles("cobrowse.start")
def start_cobrowse(ctx: ExecutionContext, command: CobrowseStart) -> CommandResult:
    cid = command.conversation_id
    ctx.hold(ConversationKey(conversation_id=cid), timeout_s=CONVERSATION_LEASE_WAIT_S)  # until the outcome commits
    live = ctx.state.get_cobrowse(cid)
    if live is not None and _still_live(ctx, live):
        return _result(live, reused=True)
    note = None
    try:
        started = ctx.genesys.start_cobrowse(cid)
    except GenesysError as exc:
        if exc.status == 404:
            _refuse_if_ended(ctx, cid)
        if exc.status != 409 or not has_live_cobrowse(ctx.genesys.get_conversation(cid)):
            raise
        ctx.genesys.patch_cobrowse_session(cid)
        started = ctx.genesys.start_cobrowse(cid)
        note = "a live cobrowse without a known join code was ended and a fresh one started"
    session = _cached(cid, started)
    ctx.state.put_cobrowse(session)
    return _result(session, reused=False, note=note)


@handles("cobrowse.end")
def end_cobrowse(ctx: ExecutionContext, command: CobrowseEnd) -> CommandResult:
    cid = command.conversation_id
    ctx.hold(ConversationKey(conversation_id=cid), timeout_s=CONVERSATION_LEASE_WAIT_S)  # until the outcome commits
    if not has_live_cobrowse(ctx.genesys.get_conversation(cid)):
        ctx.state.invalidate_cobrowse(cid)
        return CommandResult(conversation_id=cid, final_state="disconnected", already_ended=True)
    ctx.genesys.patch_cobrowse_session(cid)
    ctx.state.invalidate_cobrowse(cid)
    return CommandResult(conversation_id=cid, final_state="disconnected", already_ended=False)
