"""Is our message in the history? One rule for a reconnect and for an adoption.

A guest message whose fate is unknown (its echo was lost with the socket, its REST answer never came,
or the worker that sent it died) is looked for among the conversation's messages before it is sent
again. It is there when an inbound (guest) message carries the same text, is not older than what was
known to go before it, and is not one of our confirmed messages; when several qualify (a guest who
repeats themselves), the earliest, since only one message is ever in flight.

What "known to go before it" and "our confirmed messages" are depends on who is asking:

* a machine after a reconnect (:mod:`guest.webmessaging`, :mod:`guest.guestchat`) knows its confirmed
  messages' ids and the time of the last one;
* an adopting worker (:mod:`workers.guest.session`) knows when the dead owner took the command (less
  some clock disagreement) and the id of the last message the session confirmed.

Like the machines, no clock and no I/O: callers pass what they parsed.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from guest.common import parse_time

T = TypeVar("T")
LATEST = datetime.max.replace(tzinfo=UTC)  # where a message without a time sorts

Candidate = tuple[T, str | None, str | None, str | datetime | None]
"""A message to consider: what to return if it is ours, then its id, its text and its server time."""


@dataclass(frozen=True, slots=True)
class OwnMessage:
    """The message looked for."""

    text: str
    not_before: datetime | None = None  # sent no earlier than this (None: any time)
    confirmed: Container[str] = ()  # ids of our messages already confirmed: never this one

    def matches(self, message_id: str | None, text: str | None, time: str | datetime | None) -> bool:
        """Could this inbound message be the one looked for?"""
        if text != self.text or (message_id is not None and message_id in self.confirmed):
            return False
        if self.not_before is None:
            return True
        when = parse_time(time)
        return when is None or when >= self.not_before

    def find(self, candidates: Iterable[Candidate[T]]) -> T | None:
        """The earliest inbound message that :meth:`matches`, else None."""
        best: T | None = None
        best_at = LATEST
        for item, message_id, text, time in candidates:
            if self.matches(message_id, text, time):
                at = parse_time(time) or LATEST
                if best is None or at < best_at:
                    best, best_at = item, at
        return best
