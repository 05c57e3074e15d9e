"""The event stream indexed by command: what ended how, and when.

Events are delivered at least once, so the same event (same ``id``) may appear twice; two events with
different ids are two answers.
"""

from __future__ import annotations

import re
from collections import defaultdict

from chaos.observe import StreamEntry

TERMINAL = frozenset({"command.succeeded", "command.failed", "command.expired"})


class Outcomes:
    def __init__(self, events: list[StreamEntry]) -> None:
        self.by_key: dict[str, list[StreamEntry]] = defaultdict(list)
        self.by_session: dict[str, list[StreamEntry]] = defaultdict(list)
        self.rejected: list[StreamEntry] = []
        self.command_ids: dict[str, str] = {}  # key -> command id (from command.accepted)
        seen: set[str] = set()
        for entry in events:
            event_id = str(entry.data.get("id"))
            if event_id in seen:
                continue
            seen.add(event_id)
            data = entry.data
            kind = data.get("type")
            key = data.get("idempotency_key")
            if kind == "command.rejected":
                self.rejected.append(entry)
                continue
            if isinstance(key, str) and kind not in ("guest.message", "guest.typing", "guest.agent_joined"):
                self.by_key[key].append(entry)
                if kind == "command.accepted" and isinstance(data.get("command_id"), str):
                    self.command_ids.setdefault(key, data["command_id"])
            session = data.get("session_key")
            if isinstance(session, str) and str(kind).startswith("guest."):
                self.by_session[session].append(entry)

    def of_type(self, key: str, kind: str) -> list[StreamEntry]:
        return [e for e in self.by_key.get(key, []) if e.data.get("type") == kind]

    def terminals(self, key: str) -> list[StreamEntry]:
        return [e for e in self.by_key.get(key, []) if e.data.get("type") in TERMINAL]

    def final(self, key: str) -> StreamEntry | None:
        ends = self.terminals(key)
        return ends[0] if ends else None

    def succeeded(self, key: str) -> dict[str, object] | None:
        """The result of the command's success, if it succeeded."""
        end = self.final(key)
        if end is None or end.data.get("type") != "command.succeeded":
            return None
        result = end.data.get("result")
        return result if isinstance(result, dict) else {}


_IDS = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-f]{32}")
_NUMBERS = re.compile(r"\d+(\.\d+)?")


def reason_class(reason: str) -> str:
    """A failure reason without its ids and numbers, so reasons can be counted by kind."""
    return _NUMBERS.sub("N", _IDS.sub("<id>", reason))[:160]


def permanent(event: dict[str, object]) -> bool:
    """Whether a command.failed event gives a permanent reason (acceptable under chaos) rather than a
    transient one that ran out of attempts, a crash limit, or a bug."""
    reason = str(event.get("reason", ""))
    error = event.get("error")
    status = error.get("status") if isinstance(error, dict) else None
    transient_words = ("gave up after", "worker died", "unexpected ", "record is gone")
    if any(word in reason for word in transient_words):
        return False
    if isinstance(status, int):
        return 400 <= status < 500 and status not in (408, 409, 429)
    return bool(event.get("hint")) or "guest" in str(event.get("command_type", ""))
