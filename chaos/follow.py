"""Following ``parley:events`` while the load runs: which commands have ended, what guests were told.

This is the harness's live view, used to pace the load (never to judge it: the verdict re-reads the
whole stream at the end). One thread blocks on XREAD; waiters block on a condition it notifies, so
nobody sleeps. A Redis restart breaks the read: the thread waits for Redis and carries on from the
last id it saw.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import redis

from chaos.cluster import wait_for

EVENTS = "parley:events"
TERMINAL = frozenset({"command.succeeded", "command.failed", "command.expired"})


class Follower:
    def __init__(self, connect: Callable[[], redis.Redis]) -> None:
        self._connect = connect
        self.ended: set[str] = set()  # idempotency keys with a terminal event
        self.relayed: dict[str, set[str]] = {}  # session key -> texts of guest.message events
        self.last_id = "0-0"
        self.events_seen = 0
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="events-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        client = self._connect()
        while not self._stop.is_set():
            try:
                reply = client.xread({EVENTS: self.last_id}, count=2000, block=500)
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                client.close()
                self._wait_for_redis()
                client = self._connect()
                continue
            with self.cond:
                for _stream, rows in reply or []:
                    for entry_id, fields in rows:
                        self.last_id = entry_id
                        self._take(json.loads(fields["event"]))
                self.cond.notify_all()
        client.close()

    def _wait_for_redis(self) -> None:
        def answers() -> bool:
            if self._stop.is_set():
                return True
            try:
                probe = self._connect()
                try:
                    return bool(probe.ping())
                finally:
                    probe.close()
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                return False

        wait_for(answers, 120, "Redis back for the event follower", every_s=0.1)

    def _take(self, event: dict[str, object]) -> None:
        self.events_seen += 1
        kind = event.get("type")
        key = event.get("idempotency_key")
        if kind in TERMINAL and isinstance(key, str):
            self.ended.add(key)
        elif kind == "guest.message":
            self.relayed.setdefault(str(event.get("session_key")), set()).add(str(event.get("text")))

    def wait(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Block until ``predicate()`` (evaluated under the lock, after each batch of events) or timeout."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)
            return True
