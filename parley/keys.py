"""Every Redis key name Parley uses, in one place, spelled one way.

A name is a constant or a function of what the key is about, built by :func:`key`: the project prefix
and the parts, joined by ``:``. No other module spells a key: streams named by settings (commands,
events, dead letters) are read from :class:`Settings`, and the guest worker's own names
(:mod:`workers.guest.keys`) are built by the same :func:`key`. Customer addresses and producers'
session keys never appear in a name, only their hashes (an ``ident``).
"""

from __future__ import annotations

import hashlib

PREFIX = "parley"


def key(*parts: str) -> str:
    """``parley:<part>:<part>...``: the one spelling of a Redis key name."""
    return ":".join((PREFIX, *parts))


# --- commands: ingest, runner, sweeper, status ----------------------------------------------------------

GUEST_COMMANDS_STREAM = key("guest", "commands")
"""Commands for guest sessions, consumed by the guest worker that owns the session."""

INFLIGHT_ZSET = key("inflight")
"""Commands not yet finished: command id -> time of their last progress (the sweeper's index)."""

COMPONENTS_HASH = key("components")
"""Components `parley run` started: name -> JSON description; `parley status` checks each."""

CELERY_QUEUE = "parley.commands"
"""The Celery queue REST command tasks are published to (a queue name: kombu spells its keys)."""

CELERY_QUEUE_LISTS = tuple(CELERY_QUEUE if step == 0 else f"{CELERY_QUEUE}\x06\x16{step}" for step in (0, 3, 6, 9))
"""The Redis lists kombu keeps for that queue, one per priority step (its separator, its default steps):
the queue's depth is the sum of their lengths (``bulk`` commands wait in the last one)."""


def idempotency(org: str, command_type: str, idempotency_key: str) -> str:
    """The record of an idempotency key: holds the command id that owns it."""
    return key("idem", org, command_type, idempotency_key)


def command(command_id: str) -> str:
    """The stored command (body, state, attempts) keyed by Parley's command id."""
    return key("cmd", command_id)


def execution_lease(command_id: str) -> str:
    """Held (and renewed) while one execution of the command runs (:mod:`tasks.lease`)."""
    return key("lease", "exec", command_id)


WEBHOOK_RELAY_LEASE = key("webhook", "relay")
"""Held by the one webhook relay that delivers; others stand by (two would deliver twice, out of order)."""


def heartbeat(component: str, instance: str) -> str:
    return key("heartbeat", component, instance)


def heartbeat_pattern(component: str) -> str:
    return key("heartbeat", component, "*")


def probe(nonce: str) -> str:
    return key("probe", nonce)


def third_party_chat(conversation_id: str) -> str:
    """Marks a conversation Parley created as a routing-only third-party chat."""
    return key("thirdparty", conversation_id)


def sent_messages(conversation_id: str) -> str:
    """message id -> command id of every message Parley sent into a conversation (recovery lookups)."""
    return key("sent", conversation_id)


def lookup_checked(command_id: str, window: str) -> str:
    """Conversations a recovering command read and found without the effect of the attempts it is
    unsure of (``window``: when their outcome became unknown), so its next attempt reads on from there."""
    return key("lookup", command_id, window)


def order_queue(namespace: str, *ident: str) -> str:
    """Unfinished commands about one customer (its ident) or conversation (org and id), in the order
    ingest accepted them (:mod:`parley.ordering`)."""
    return key("order", namespace, *ident)


# --- the state cache (parley.state_cache); a natural key appears as its ident ----------------------------


def live_conversation(customer_ident: str) -> str:
    """The customer's live conversation."""
    return key("state", "live", customer_ident)


def conversation_customer(conversation_id: str) -> str:
    """Reverse index conversation id -> customer ident, to forget a conversation Genesys contradicts."""
    return key("state", "conv", conversation_id)


def live_cobrowse(conversation_id: str) -> str:
    """The conversation's live cobrowse session."""
    return key("state", "cobrowse", conversation_id)


def ended_conversation(conversation_id: str) -> str:
    """Set once Parley ended the conversation or read it ended (explains a later 404 about it)."""
    return key("state", "ended", conversation_id)


def guest_ids(guest_ident: str) -> str:
    """The Genesys ids of a producer's guest session."""
    return key("state", "guest", guest_ident)


def natural_lease(namespace: str, ident: str) -> str:
    """The lease serializing commands on one customer, conversation or guest session."""
    return key("state", "lease", namespace, ident)


def natural_fence(namespace: str, ident: str) -> str:
    """The counter behind that lease's fencing tokens (:mod:`parley.leases`)."""
    return key("state", "fence", namespace, ident)


# --- one Genesys OAuth client, shared by every process using it (genesys.auth, genesys.ratelimit) ----------
# Genesys limits and tokens are per client-credentials client, so its keys are scoped by a hash of the
# login URL and client id: the id itself is not written to Redis, the secret never is, and the same
# client id against the emulator and a real org never shares a token.


def genesys_client(login_url: str, client_id: str) -> str:
    """The client's ident: a hash of its login URL and id."""
    return hashlib.sha256(f"{login_url}\n{client_id}".encode()).hexdigest()[:20]


def genesys_token(client: str) -> str:
    """The client's cached OAuth token (JSON)."""
    return key("genesys", client, "token")


def genesys_token_lock(client: str) -> str:
    """Held by the one process fetching a new token."""
    return key("genesys", client, "token", "lock")


def genesys_rate(client: str) -> str:
    """The rate limiter's next free slot."""
    return key("genesys", client, "rate")


def genesys_pause(client: str) -> str:
    """Set while every process waits out a 429's Retry-After."""
    return key("genesys", client, "pause")


def genesys_slot(client: str, holder: str) -> str:
    """A request slot the rate limiter keeps for a parked command (``holder``, its id) until it is back."""
    return key("genesys", client, "slot", holder)
