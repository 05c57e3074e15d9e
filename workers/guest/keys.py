"""Every Redis key the guest worker uses, under ``parley:guest:`` (see :mod:`parley.keys`).

Sessions are named by ``ident``, the hash of (org, session_key) that the state cache uses
(:meth:`parley.state_cache.GuestKey.ident`), so producer ids never appear in key names.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from parley import keys
from parley.state_cache import GuestKey


@functools.lru_cache(maxsize=65_536)
def session_ident(org: str, session_key: str) -> str:
    """The session's ident (a hash, computed through a model): cached, as every routed command needs it
    and a busy session key comes back again and again."""
    return GuestKey(org=org, session_key=session_key).ident()


@dataclass(frozen=True)
class GuestKeys:
    prefix: str = f"{keys.PREFIX}:guest"
    commands: str = keys.GUEST_COMMANDS_STREAM

    # --- per session -------------------------------------------------------------------------------
    def session(self, ident: str) -> str:
        """Hash: owner, fencing token, status, command cursor, ids, relay checkpoint (no secrets)."""
        return f"{self.prefix}:session:{ident}"

    def inbox(self, ident: str) -> str:
        """Stream of the session's commands (command id, type) in the order they were routed."""
        return f"{self.prefix}:inbox:{ident}"

    def secret(self, ident: str) -> str:
        """The session token / guest JWT needed to resume, with the session's lifetime as TTL."""
        return f"{self.prefix}:secret:{ident}"

    def relayed(self, ident: str) -> str:
        """Set of ids of what was relayed as an event (agent messages, joins, the end): exactly once."""
        return f"{self.prefix}:relayed:{ident}"

    def fence(self, ident: str) -> str:
        """Counter behind the session's fencing tokens; outlives the session record on purpose."""
        return f"{self.prefix}:fence:{ident}"

    # --- per worker --------------------------------------------------------------------------------
    @property
    def workers(self) -> str:
        """Set of worker ids that may own sessions (alive or not yet cleaned up)."""
        return f"{self.prefix}:workers"

    def worker(self, worker_id: str) -> str:
        """The worker's lease: while it exists, the worker owns every session naming it."""
        return f"{self.prefix}:worker:{worker_id}"

    def owned(self, worker_id: str) -> str:
        """Set of idents the worker owns: what another worker adopts when this one dies."""
        return f"{self.prefix}:owned:{worker_id}"

    def doorbell(self, worker_id: str) -> str:
        """Stream of idents that have news for the worker (a command, a session handed to it)."""
        return f"{self.prefix}:doorbell:{worker_id}"

    @property
    def router(self) -> str:
        """Lease of the one worker that routes parley:guest:commands (routing order = command order)."""
        return f"{self.prefix}:router"

    @property
    def announce(self) -> str:
        """Stream where a stopping worker says its sessions are free, so adoption starts at once."""
        return f"{self.prefix}:announce"
