"""Append events to ``parley:events``, alone or inside a Redis transaction with a state change."""

from __future__ import annotations

import redis

from parley.settings import Settings
from schemas.events import EventBase

EVENT_FIELD = "event"


class EventLog:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._client = client
        self.stream = settings.events_stream
        self.maxlen = settings.events_maxlen

    def append(self, event: EventBase, pipe: redis.client.Pipeline | None = None) -> None:
        """XADD the event; with ``pipe``, it commits atomically with whatever else ``pipe`` holds."""
        target = pipe if pipe is not None else self._client
        target.xadd(self.stream, {EVENT_FIELD: event.model_dump_json(by_alias=True, exclude_none=True)},
                    maxlen=self.maxlen, approximate=True)

    def payload(self, event: EventBase) -> str:
        return event.model_dump_json(by_alias=True, exclude_none=True)
