"""Every Redis key name Parley uses, in one place.

Streams named by settings (commands, events, dead letters) are read from :class:`Settings`; the
rest are derived here so that no module invents its own key spelling.
"""

from __future__ import annotations

PREFIX = "parley"

GUEST_COMMANDS_STREAM = f"{PREFIX}:guest:commands"
"""Commands for guest sessions, consumed by the guest worker that owns the session."""

INFLIGHT_ZSET = f"{PREFIX}:inflight"
"""Commands not yet finished: command id -> time of their last progress (the sweeper's index)."""

COMPONENTS_HASH = f"{PREFIX}:components"
"""Components `parley run` started: name -> JSON description; `parley status` checks each."""

CELERY_QUEUE = "parley.commands"
"""The Celery queue REST command tasks are published to."""


def idempotency(org: str, command_type: str, key: str) -> str:
    """The record of an idempotency key: holds the command id that owns it."""
    return f"{PREFIX}:idem:{org}:{command_type}:{key}"


def command(command_id: str) -> str:
    """The stored command (body, state, attempts) keyed by Parley's command id."""
    return f"{PREFIX}:cmd:{command_id}"


def execution_lease(command_id: str) -> str:
    return f"{PREFIX}:lease:exec:{command_id}"


def heartbeat(component: str, instance: str) -> str:
    return f"{PREFIX}:heartbeat:{component}:{instance}"


def heartbeat_pattern(component: str) -> str:
    return f"{PREFIX}:heartbeat:{component}:*"


def probe(nonce: str) -> str:
    return f"{PREFIX}:probe:{nonce}"


def third_party_chat(conversation_id: str) -> str:
    """Marks a conversation Parley created as a routing-only third-party chat."""
    return f"{PREFIX}:thirdparty:{conversation_id}"


def sent_messages(conversation_id: str) -> str:
    """message id -> command id of every message Parley sent into a conversation (recovery lookups)."""
    return f"{PREFIX}:sent:{conversation_id}"
