"""Submitting the load: REST commands at the pace Parley keeps up with, guest sessions alongside.

The REST load is closed-loop: at most ``window`` commands are submitted and not yet ended, so the
queue stays short and "in flight when a fault struck" means commands being worked on, not a backlog
of thousands (which would make every recovery time the time to drain it). If the window stays full
for ``STALL_S`` (commands stuck behind a dead worker) the load goes on regardless, as producers do.
Guest commands follow the REST progress; a session ends once the agent's answers to all its messages
have been relayed (or, at the end, after ``GUEST_SETTLE_S``).
"""

from __future__ import annotations

import heapq
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from chaos.cluster import Cluster, wait_for
from chaos.follow import Follower
from chaos.load import GuestSession, Plan, Step

COMMANDS = "parley:commands"
STALL_S = 10.0
GUEST_SETTLE_S = 60.0


@dataclass
class Submitted:
    """What the harness put on ``parley:commands`` and when (wall clock, seconds)."""

    at: dict[str, float] = field(default_factory=dict)  # key -> first submission
    entries: dict[str, list[str]] = field(default_factory=dict)  # key -> stream entry ids
    invalid: dict[int, str] = field(default_factory=dict)  # invalid index -> stream entry id
    invalid_at: dict[int, float] = field(default_factory=dict)
    retried_pipelines: int = 0
    window_overruns: int = 0
    started_at: float = 0.0
    rest_done_at: float = 0.0
    done_at: float = 0.0


class Driver:
    def __init__(self, cluster: Cluster, follower: Follower, plan: Plan, window: int,
                 say: Callable[[str], None] | None = None) -> None:
        self.cluster = cluster
        self.say = say
        self.follower = follower
        self.plan = plan
        self.window = window
        self.submitted = Submitted()
        self.pause = threading.Lock()  # the fault thread holds it while Redis restarts
        self.progress = 0.0
        self.progress_cond = threading.Condition()
        self._open: set[str] = set()
        self._client = cluster.redis_client()
        self._guest_queue: list[tuple[float, int, dict[str, Any]]] = []
        self._ended_sessions: set[str] = set()
        self._sessions_sent: dict[str, int] = {}

    # --- submission ------------------------------------------------------------------------------------
    def _xadd(self, entries: list[dict[str, str | bytes]]) -> list[str]:
        """XADD ``entries`` in one transaction (the same moment); rides out a Redis outage."""
        while True:
            with self.pause:
                try:
                    pipe = self._client.pipeline(transaction=True)
                    for fields in entries:
                        pipe.xadd(COMMANDS, fields)  # type: ignore[arg-type]
                    return [str(i) for i in pipe.execute()]
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    self.submitted.retried_pipelines += 1
            wait_for(self._redis_answers, 120, "Redis back for the load driver", every_s=0.1)

    def _redis_answers(self) -> bool:
        try:
            return bool(self._client.ping())
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
            return False

    def _submit_step(self, step: Step) -> None:
        fields: list[dict[str, str | bytes]] = []
        for entry in step.entries:
            if entry.role == "invalid":
                assert entry.invalid is not None
                fields.append(self.plan.invalid[entry.invalid].stream_fields())
            else:
                assert entry.key is not None
                fields.append({"command": json.dumps(self.plan.commands[entry.key].body)})
        ids = self._xadd(fields)
        now = time.time()
        for entry, entry_id in zip(step.entries, ids, strict=True):
            if entry.role == "invalid":
                assert entry.invalid is not None
                self.submitted.invalid[entry.invalid] = entry_id
                self.submitted.invalid_at[entry.invalid] = now
                continue
            assert entry.key is not None
            self.submitted.entries.setdefault(entry.key, []).append(entry_id)
            if entry.role == "valid":
                self.submitted.at[entry.key] = now
                self._open.add(entry.key)

    def _submit_command(self, command: dict[str, Any]) -> None:
        [entry_id] = self._xadd([{"command": json.dumps(command)}])
        key = command["idempotency_key"]
        self.submitted.at[key] = time.time()
        self.submitted.entries.setdefault(key, []).append(entry_id)

    # --- pacing ----------------------------------------------------------------------------------------
    def _room(self) -> bool:
        self._open -= self.follower.ended
        return len(self._open) < self.window

    def _set_progress(self, value: float) -> None:
        with self.progress_cond:
            self.progress = value
            self.progress_cond.notify_all()

    def wait_progress(self, at_least: float, stop: threading.Event) -> bool:
        """Block until the REST load has reached ``at_least`` (a fraction); False if ``stop`` was set."""
        with self.progress_cond:
            while self.progress < at_least and not stop.is_set():
                self.progress_cond.wait(0.5)
        return not stop.is_set()

    # --- guests ----------------------------------------------------------------------------------------
    def _queue_guests(self) -> None:
        order = 0
        for session in self.plan.guests:
            items: list[tuple[float, dict[str, Any]]] = [(session.at, session.start)]
            items += list(zip(session.send_at, session.sends, strict=True))
            items.append((session.send_at[0] if session.send_at else session.at, session.typing))
            for at, command in items:
                heapq.heappush(self._guest_queue, (at, order, command))
                order += 1

    def _emit_guests(self, progress: float) -> None:
        while self._guest_queue and self._guest_queue[0][0] <= progress:
            _at, _order, command = heapq.heappop(self._guest_queue)
            self._submit_command(command)
            if command["type"] == "guest.send":
                sk = command["session_key"]
                self._sessions_sent[sk] = self._sessions_sent.get(sk, 0) + 1

    def _answered(self, session: GuestSession) -> bool:
        """Every guest text of the session has the simulated agent's answer relayed."""
        relayed = self.follower.relayed.get(session.session_key, set())
        return all(f"You said: {text[:50]}" in relayed for text in session.texts)

    def _end_answered_sessions(self, *, force: bool = False) -> None:
        for session in self.plan.guests:
            sk = session.session_key
            if sk in self._ended_sessions or self._sessions_sent.get(sk, 0) < len(session.sends):
                continue
            with self.follower.cond:
                ready = force or self._answered(session)
            if ready:
                self._ended_sessions.add(sk)
                self._submit_command(session.end)

    # --- the run ---------------------------------------------------------------------------------------
    def run(self) -> Submitted:
        self.submitted.started_at = time.time()
        self._queue_guests()
        steps = self.plan.steps
        for i, step in enumerate(steps):
            if not self.follower.wait(self._room, STALL_S):
                self.submitted.window_overruns += 1
            self._submit_step(step)
            progress = (i + 1) / len(steps)
            self._emit_guests(progress)
            if i % 50 == 0:
                self._end_answered_sessions()
            if self.say and int(progress * 10) != int(i / len(steps) * 10):
                self.say(f"load {progress:.0%}: {len(self.submitted.at)} commands submitted, "
                         f"{len(self.follower.ended)} ended")
            self._set_progress(progress)
        self.submitted.rest_done_at = time.time()
        self._emit_guests(1.0)
        self._set_progress(1.0)
        all_answered = lambda: all(self._answered(s) for s in self.plan.guests)  # noqa: E731
        self.follower.wait(all_answered, GUEST_SETTLE_S)
        self._end_answered_sessions(force=True)
        for step in self.plan.last:
            self._submit_step(step)
        self.submitted.done_at = time.time()
        return self.submitted

    def close(self) -> None:
        self._client.close()
