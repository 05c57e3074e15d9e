"""What a command handler gets: the command's identity, its attempt, and the shared clients."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import redis

from parley.settings import Settings
from parley.state_cache import StateCache
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
    genesys_factory: Callable[[], GenesysClient] | None = None
    _genesys: GenesysClient | None = field(default=None, init=False, repr=False)
    _state: StateCache | None = field(default=None, init=False, repr=False)

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


class Refused(Exception):
    """Parley declines the command itself (before or instead of a Genesys call): a permanent failure
    whose reason and hint explain what to do, e.g. text aimed at a routing-only third-party chat."""

    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


Handler = Callable[[ExecutionContext, Command], CommandResult]

HANDLERS: dict[str, Handler] = {}
"""Command type -> the function that carries it out against Genesys Cloud."""


def handles(command_type: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[command_type] = fn
        return fn

    return register
