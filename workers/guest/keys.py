"""Every Redis key the guest worker uses, under ``parley:guest:``, built by :func:`parley.keys.key`.

Sessions are named by ``ident``, the hash of (org, session_key) that the state cache uses
(:meth:`parley.state_cache.GuestKey.ident`), so producer ids never appear in key names. Scripts that
follow a worker id or an ident to a key get the name's beginning from here (``owned("")``) rather
than spelling it in Lua.
"""

from __future__ import annotations

import functools

from parley import keys
from parley.state_cache import GuestKey

COMMANDS = keys.GUEST_COMMANDS_STREAM
"""Guest commands as the ingestion worker hands them on, read by the routing worker."""


@functools.lru_cache(maxsize=65_536)
def session_ident(org: str, session_key: str) -> str:
    """The session's ident (a hash, computed through a model): cached, as every routed command needs it
    and a busy session key comes back again and again."""
    return GuestKey(org=org, session_key=session_key).ident()


# --- per session ---------------------------------------------------------------------------------------


def session(ident: str) -> str:
    """Hash: owner, fencing token, status, command cursor, ids, relay checkpoint (no secrets)."""
    return keys.key("guest", "session", ident)


def inbox(ident: str) -> str:
    """Stream of the session's commands (command id, type) in the order they were routed."""
    return keys.key("guest", "inbox", ident)


def secret(ident: str) -> str:
    """The session token / guest JWT needed to resume, with the session's lifetime as TTL."""
    return keys.key("guest", "secret", ident)


def relayed(ident: str) -> str:
    """Set of ids of what was relayed as an event (agent messages, joins, the end): exactly once."""
    return keys.key("guest", "relayed", ident)


def fence(ident: str) -> str:
    """Counter behind the session's fencing tokens; outlives the session record on purpose."""
    return keys.key("guest", "fence", ident)


# --- per worker ----------------------------------------------------------------------------------------

WORKERS = keys.key("guest", "workers")
"""Set of worker ids that may own sessions (alive or not yet cleaned up)."""

ROUTER = keys.key("guest", "router")
"""Lease of the one worker that routes parley:guest:commands (routing order = command order)."""

ANNOUNCE = keys.key("guest", "announce")
"""Stream where a stopping worker says its sessions are free, so adoption starts at once."""


def worker(worker_id: str) -> str:
    """The worker's lease: while it exists, the worker owns every session naming it."""
    return keys.key("guest", "worker", worker_id)


def owned(worker_id: str) -> str:
    """Set of idents the worker owns: what another worker adopts when this one dies."""
    return keys.key("guest", "owned", worker_id)


def doorbell(worker_id: str) -> str:
    """Stream of idents that have news for the worker (a command, a session handed to it)."""
    return keys.key("guest", "doorbell", worker_id)


# --- per deployment --------------------------------------------------------------------------------------


def connect_budget(org: str, deployment_id: str) -> str:
    """Hash (tokens, at): the token bucket of new guest sockets on a deployment, shared by every worker."""
    return keys.key("guest", "budget", org, deployment_id)
