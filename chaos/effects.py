"""REST effects: every success's effect is in the ledger and is that command's alone; nothing extra.

Attribution: a message's customer is the conversation's customer (read back from Genesys), and its
text length names the command among that customer's messages (see :mod:`chaos.load`). A chat is
stamped by Parley with the command id (``parley_command_id``). Cobrowse sessions are named by id in
the successes; a second start on a live session legitimately answers the live one (``reused``).
"""

from __future__ import annotations

from collections import Counter, defaultdict

from chaos.emulator import LedgerEntry
from chaos.load import Plan, PlannedCommand
from chaos.models import Findings
from chaos.observe import Observed
from chaos.outcomes import Outcomes


def check_rest(plan: Plan, outcomes: Outcomes, observed: Observed, targets: set[str]) -> Findings:
    found = Findings()
    by_type: dict[str, list[PlannedCommand]] = defaultdict(list)
    for command in plan.commands.values():
        by_type[command.type].append(command)
    _messages(by_type["message.send"], outcomes, observed, targets, found)
    _ends(by_type["conversation.end"], outcomes, observed, found)
    _chats(by_type["chat.create"], outcomes, observed, found)
    _cobrowse(by_type["cobrowse.start"], outcomes, observed, targets, found)
    if observed.unreadable:
        found.add("read-back", "conversations Genesys created that could not be read back", observed.unreadable)
    return found


def _client(observed: Observed, kind: str) -> list[LedgerEntry]:
    return [e for e in observed.ledger if e.kind == kind and e.by == "client"]


def _messages(commands: list[PlannedCommand], outcomes: Outcomes, observed: Observed, targets: set[str],
              found: Findings) -> None:
    sent = [e for e in _client(observed, "message.sent") if e.conversation_id not in targets]
    by_id = {e.message_id: e for e in sent}
    by_fingerprint: dict[tuple[str, int], list[LedgerEntry]] = defaultdict(list)
    for entry in sent:
        customer = observed.customers.get(entry.conversation_id or "")
        by_fingerprint[(customer or "?", entry.text_length or 0)].append(entry)
    # conversation -> seq of its conversation.created: a message right after it opened the conversation
    opened_by = {e.conversation_id: e.seq for e in _client(observed, "conversation.created")}
    claimed: dict[str, list[str]] = defaultdict(list)  # message id -> keys of successes naming it
    expected: set[tuple[str, int]] = set()
    for command in commands:
        assert command.customer is not None and command.text is not None
        fingerprint = (command.customer, len(command.text))
        expected.add(fingerprint)
        effects = by_fingerprint.get(fingerprint, [])
        result = outcomes.succeeded(command.key)
        if result is None:
            if effects:
                found.add("no effect without success", f"{command.key} did not succeed but its text was sent "
                          f"{len(effects)} time(s)", [command.key, *(e.message_id or "" for e in effects)])
            continue
        message_id = str(result.get("message_id") or "")
        claimed[message_id].append(command.key)
        entry = by_id.get(message_id)
        if entry is None:
            found.add("success has its effect", f"{command.key} succeeded naming message {message_id or '(none)'}, "
                      "which Genesys never sent", [command.key, message_id])
        elif (observed.customers.get(entry.conversation_id or ""), entry.text_length) != fingerprint:
            found.add("effect belongs to its command", f"{command.key} claims message {message_id}, which Genesys "
                      "sent with another command's text", [command.key, message_id])
        if len(effects) > 1:
            first = any(e.conversation_id in opened_by and opened_by[e.conversation_id] == e.seq - 1 for e in effects)
            found.add("no extra side effects", f"{command.key}'s text was sent {len(effects)} times"
                      + (" (the first message to a new customer)" if first else ""),
                      [command.key, *(e.message_id or "" for e in effects)])
            found.count("extra messages", len(effects) - 1)
        elif not effects:
            found.add("success has its effect", f"{command.key} succeeded but its text was never sent",
                      [command.key])
    for message_id, keys in claimed.items():
        if message_id and len(keys) > 1:
            found.add("effect belongs to its command", f"{len(keys)} successes claim message {message_id}",
                      [message_id, *keys])
    strays = [e for fp, entries in by_fingerprint.items() if fp not in expected for e in entries]
    if strays:
        found.add("no extra side effects", "messages sent that no command's text accounts for",
                  [e.message_id or "" for e in strays])
        found.count("extra messages", len(strays))
    # A pool customer's conversation is never ended during the run: a second one is an extra effect.
    created = Counter(observed.customers.get(e.conversation_id or "", "?")
                      for e in _client(observed, "conversation.created") if e.conversation_id not in targets)
    doubled = [customer for customer, n in created.items() if n > 1]
    if doubled:
        found.add("no extra side effects", "customers given a second conversation while the first was live",
                  doubled)
        found.count("extra conversations", sum(created[c] - 1 for c in doubled))
    found.figures["messages sent (ledger)"] = len(sent)
    found.figures["conversations created (ledger)"] = sum(created.values())


def _ends(commands: list[PlannedCommand], outcomes: Outcomes, observed: Observed, found: Findings) -> None:
    ended = Counter(e.conversation_id for e in observed.ledger if e.kind == "conversation.disconnected")
    for command in commands:
        if outcomes.succeeded(command.key) is not None and not ended.get(command.target):
            found.add("success has its effect", f"{command.key} succeeded but conversation {command.target} "
                      "never ended", [command.key, command.target or ""])
        if command.expired and ended.get(command.target) and not any(
                outcomes.succeeded(c.key) is not None for c in commands if c.target == command.target):
            found.add("no effect without success", f"expired {command.key} ended {command.target}", [command.key])
    twice = [cid for cid, n in ended.items() if n > 1 and cid in {c.target for c in commands}]
    if twice:
        found.add("no extra side effects", "conversations disconnected more than once", [str(c) for c in twice])


def _chats(commands: list[PlannedCommand], outcomes: Outcomes, observed: Observed, found: Findings) -> None:
    chats = [e for e in _client(observed, "chat.created")]
    key_of_id = {outcomes.command_ids.get(c.key): c.key for c in commands}
    stamped: dict[str, list[str]] = defaultdict(list)  # key -> chats stamped with its command id
    for chat in chats:
        stamp = observed.chat_stamps.get(chat.conversation_id or "")
        key = key_of_id.get(stamp)
        if key is None:
            found.add("no extra side effects", f"chat {chat.conversation_id} belongs to no command (stamp {stamp})",
                      [chat.conversation_id or ""])
            continue
        stamped[key].append(chat.conversation_id or "")
    for command in commands:
        mine = stamped.get(command.key, [])
        result = outcomes.succeeded(command.key)
        if len(mine) > 1:
            found.add("no extra side effects", f"{command.key} created {len(mine)} chats", [command.key, *mine])
            found.count("extra chats", len(mine) - 1)
        if result is None:
            if mine:
                end = outcomes.final(command.key)
                kind = end.data.get("type") if end else "no outcome"
                if kind == "command.failed":  # by design: the failure names the attribute to look for
                    found.count("chats of failed commands (lost answers, reported)")
                else:
                    found.add("no effect without success", f"{command.key} ({kind}) created a chat", [command.key])
            continue
        if result.get("conversation_id") not in mine:
            found.add("success has its effect", f"{command.key} succeeded naming chat {result.get('conversation_id')}"
                      f", not one stamped with its command id (stamped: {mine})", [command.key])
    found.figures["chats created (ledger)"] = len(chats)


def _cobrowse(starts: list[PlannedCommand], outcomes: Outcomes, observed: Observed, targets: set[str],
              found: Findings) -> None:
    started = {e.cobrowse_session_id: e for e in observed.ledger
               if e.kind == "cobrowse.started" and e.conversation_id in targets}
    ended = {e.cobrowse_session_id for e in observed.ledger if e.kind == "cobrowse.ended"}
    fresh: dict[str, list[str]] = defaultdict(list)  # session -> keys that started it (reused: false)
    claimed: set[str] = set()
    for command in starts:
        result = outcomes.succeeded(command.key)
        if result is None:
            continue
        session = str(result.get("cobrowse_session_id") or "")
        claimed.add(session)
        entry = started.get(session)
        if entry is None or entry.conversation_id != command.target:
            found.add("success has its effect", f"{command.key} names cobrowse {session}, not started in "
                      f"{command.target}", [command.key, session])
        if not result.get("reused"):
            fresh[session].append(command.key)
    for session, keys in fresh.items():
        if len(keys) > 1:
            found.add("effect belongs to its command", f"cobrowse {session} claimed as new by {len(keys)} commands",
                      [session, *keys])
    orphans = [s for s in started if s not in claimed]
    live_orphans = [s or "" for s in orphans if s not in ended]
    found.figures["cobrowse sessions started (ledger)"] = len(started)
    found.figures["cobrowse sessions no command owns, ended"] = len(orphans) - len(live_orphans)
    if live_orphans:
        found.add("no extra side effects", "cobrowse sessions left running that no command owns", live_orphans)
