"""What a command handler gets: the command's identity, its attempt, and the shared clients.

A handler can also stage writes that commit with its success (:meth:`ExecutionContext.on_success`)
and hold natural-key leases until then (:meth:`ExecutionContext.hold`): the runner commits the
staged writes, the lease releases and the command's outcome in one transaction, so the next command
on the same customer or conversation starts from what this one learned, and the hot path makes one
Redis round trip where it would make several.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import redis

from parley.outcomes import StagedWrite
from parley.settings import Settings
from parley.state_cache import Lease, StateCache, Subject
from schemas.commands import Command
from schemas.events import CommandResult

if TYPE_CHECKING:
    from genesys.client import GenesysClient


@dataclass
class ExecutionContext:
    settings: Settings
    redis: redis.Redis
    command_id: str
    attempt: int
    recovering: bool
    """A previous attempt may have reached Genesys with an unknown outcome: look up before acting."""
    previous_attempt_started_at: datetime | None = None
    """When the attempt whose outcome is unknown started: Genesys effects after it may be ours."""
    unknown_until: datetime | None = None
    """The latest moment an earlier attempt's effect can have happened (an answer lost, a worker died)."""
    genesys_factory: Callable[[], GenesysClient] | None = None
    _genesys: GenesysClient | None = field(default=None, init=False, repr=False)
    _state: StateCache | None = field(default=None, init=False, repr=False)
    _success_writes: list[StagedWrite] = field(default_factory=list, init=False, repr=False)
    _held: list[Lease] = field(default_factory=list, init=False, repr=False)

    @property
    def state(self) -> StateCache:
        if self._state is None:
            self._state = StateCache(self.redis)
        return self._state

    @property
    def genesys(self) -> GenesysClient:
        if self._genesys is None:
            if self.genesys_factory is None:
                raise RuntimeError("no Genesys client configured for this worker")
            self._genesys = self.genesys_factory()
        return self._genesys

    def on_success(self, write: StagedWrite) -> None:
        """Commit ``write`` with the command's success, or not at all if the handler fails."""
        self._success_writes.append(write)

    def hold(self, subject: Subject, timeout_s: float) -> Lease:
        """Take ``subject``'s lease for the rest of this execution (:class:`LeaseTimeout` if it stays taken).

        It is released after the writes staged with :meth:`on_success` commit, in their transaction.
        """
        lease = self.state.lease(subject, self.settings.natural_key_lease_ms, timeout_s=timeout_s)
        self._held.append(lease)
        return lease

    def success_writes(self) -> list[StagedWrite]:
        """The staged writes, then the releases of the held leases, for the success transaction."""
        return [*self._success_writes, *(lease.release_in for lease in self._held)]

    def committed(self) -> None:
        """The success transaction ran: its writes are in, its leases released."""
        self._success_writes, self._held = [], []

    def release_held(self) -> None:
        """Release leases still held (the handler failed or was refused): nothing staged is committed."""
        held, self._held = self._held, []
        for lease in held:
            lease.release()


class Refused(Exception):
    """Parley declines the command itself (before or instead of a Genesys call): a permanent failure
    whose reason and hint explain what to do, e.g. text aimed at a routing-only third-party chat."""

    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


class NotYet(Exception):
    """Genesys cannot settle the handler's question yet (analytics has not indexed what a lost attempt
    may have created): run the command again after ``delay_s``, still recovering, without using an attempt."""

    def __init__(self, delay_s: float, reason: str) -> None:
        super().__init__(reason)
        self.delay_s = delay_s
        self.reason = reason


Handler = Callable[[ExecutionContext, Command], CommandResult]

HANDLERS: dict[str, Handler] = {}
"""Command type -> the function that carries it out against Genesys Cloud."""


def handles(command_type: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[command_type] = fn
        return fn

    return register
