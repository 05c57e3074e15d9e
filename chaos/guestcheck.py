"""Guest messages, both ways, none lost and none doubled.

* guest -> agent: each guest text reaches Genesys once: the ledger has one ``guest.message.received``
  of its length in the session's conversation (lengths are unique within a session, see
  :mod:`chaos.load`).
* agent -> guest: each ``agent.message.sent`` in the session's conversation, up to the session's end,
  is relayed once as ``guest.message`` (same message id) on ``parley:events``, and nothing else is.

A session's conversations are found from the ledger: those holding the messages its commands report
or its relays carry, plus, for web messaging, every conversation of the same guest session.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from chaos.emulator import LedgerEntry
from chaos.load import GuestSession, Plan
from chaos.models import Findings
from chaos.observe import Observed
from chaos.outcomes import Outcomes

ENDS = frozenset({"guest.session.ended", "conversation.disconnected"})


def check_guests(plan: Plan, outcomes: Outcomes, observed: Observed) -> Findings:
    found = Findings()
    by_conversation: dict[str, list[LedgerEntry]] = defaultdict(list)
    by_message: dict[str, LedgerEntry] = {}
    by_wm_session: dict[str, set[str]] = defaultdict(set)
    for entry in observed.ledger:
        if entry.conversation_id:
            by_conversation[entry.conversation_id].append(entry)
            if entry.session_id:
                by_wm_session[entry.session_id].add(entry.conversation_id)
        if entry.message_id:
            by_message[entry.message_id] = entry
    for session in plan.guests:
        _session(session, outcomes, by_conversation, by_message, by_wm_session, found)
    return found


def _conversations(session: GuestSession, outcomes: Outcomes, by_message: dict[str, LedgerEntry],
                   by_wm_session: dict[str, set[str]]) -> set[str]:
    ids: set[str] = set()
    for command in [session.start, *session.sends]:
        result = outcomes.succeeded(command["idempotency_key"]) or {}
        for field in ("message_id",):
            entry = by_message.get(str(result.get(field) or ""))
            if entry and entry.conversation_id:
                ids.add(entry.conversation_id)
        if result.get("conversation_id"):
            ids.add(str(result["conversation_id"]))
    for event in outcomes.by_session.get(session.session_key, []):
        entry = by_message.get(str(event.data.get("message_id") or ""))
        if entry and entry.conversation_id:
            ids.add(entry.conversation_id)
        if event.data.get("conversation_id"):
            ids.add(str(event.data["conversation_id"]))
    wm_sessions = {e.session_id for e in by_message.values() if e.conversation_id in ids and e.session_id}
    for wm in wm_sessions:
        ids |= by_wm_session.get(wm or "", set())
    return ids


def _session(session: GuestSession, outcomes: Outcomes, by_conversation: dict[str, list[LedgerEntry]],
             by_message: dict[str, LedgerEntry], by_wm_session: dict[str, set[str]], found: Findings) -> None:
    sk = session.session_key
    conversations = _conversations(session, outcomes, by_message, by_wm_session)
    ledger = sorted((e for cid in conversations for e in by_conversation.get(cid, [])), key=lambda e: e.seq)
    # guest -> agent
    received = Counter(e.text_length for e in ledger if e.kind == "guest.message.received")
    commands = ([session.start] if "first_message" in session.start else []) + session.sends
    for text, command in zip(session.texts, commands, strict=True):
        key = command["idempotency_key"]
        n = received.get(len(text), 0)
        found.count("guest->agent sent")
        succeeded = outcomes.succeeded(key) is not None
        if n == 1 and succeeded:
            found.count("guest->agent received once")
        elif n == 0 and succeeded:
            found.add("guest messages not lost", f"{sk}: {key} succeeded but Genesys never received its text", [key])
            found.count("guest->agent lost")
        elif n > 1:
            found.add("guest messages not doubled", f"{sk}: {key}'s text reached Genesys {n} times", [key])
            found.count("guest->agent doubled", n - 1)
        elif n == 1 and not succeeded:
            found.add("no effect without success", f"{sk}: {key} did not succeed but Genesys received its text",
                      [key])
    # agent -> guest, up to the session's end
    end_seq = min((e.seq for e in ledger if e.kind in ENDS), default=None)
    expected = [e for e in ledger if e.kind == "agent.message.sent" and (end_seq is None or e.seq < end_seq)]
    late = {e.message_id for e in ledger if e.kind == "agent.message.sent" and end_seq is not None
            and e.seq > end_seq}
    relays = Counter(str(e.data.get("message_id")) for e in outcomes.by_session.get(sk, [])
                     if e.data.get("type") == "guest.message")
    for entry in expected:
        n = relays.get(entry.message_id or "", 0)
        found.count("agent->guest sent")
        if n == 1:
            found.count("agent->guest relayed once")
        elif n == 0:
            found.add("guest messages not lost", f"{sk}: agent message {entry.message_id} was never relayed",
                      [sk, entry.message_id or ""])
            found.count("agent->guest lost")
        else:
            found.add("guest messages not doubled", f"{sk}: agent message {entry.message_id} relayed {n} times",
                      [sk, entry.message_id or ""])
            found.count("agent->guest doubled", n - 1)
    known = {e.message_id for e in expected} | late
    strays = [m for m in relays if m not in known]
    if strays:
        found.add("guest messages not doubled", f"{sk}: relayed messages the agent never sent in its conversation",
                  [sk, *strays])
    if not conversations:
        found.add("guest messages not lost", f"{sk}: no conversation in Genesys", [sk])
