"""Genesys faults per call, drawn from a seeded mix: 409s, 503s, 429s with Retry-After, answers lost
after the call took effect, and latency on everything.

Why not the emulator's fault API alone: its fault list is ordered and "the first matching fault
decides" (a probabilistic fault that does not fire lets the call through instead of passing it on),
so a 20 % 409 and a 5 % 503 on one route never combine; a queue of one-shot faults per call would
combine them, but at one admin request and a scan of the whole list per Genesys call. So the harness
runs the emulator's own app with :class:`FaultMix` installed on its fault injector
(:mod:`chaos.emulator_server`): faults added through the admin API still come first and behave as
documented; when none fires, a call on a route of :data:`ROUTES` gets its draw from the mix, as the
emulator would apply any fault (:class:`emulator.faults.FaultSpec`).
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from chaos.config import FaultRates
from emulator.faults import FaultInjector, FaultSpec, compile_path

Kind = Literal["409", "503", "429", "lost_answer", "latency"]
RouteClass = Literal["mutate", "read", "guest"]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    klass: RouteClass

    @property
    def pattern(self) -> re.Pattern[str]:
        return compile_path(self.path)


ROUTES: tuple[Route, ...] = (
    # Calls with an effect: Genesys answers them 409 request.conflict (cobrowse starts, disconnects,
    # sends), and a lost answer leaves Parley not knowing whether the effect happened.
    Route("POST", "/api/v2/conversations/messages/agentless", "mutate"),
    Route("POST", "/api/v2/conversations/chats", "mutate"),
    Route("POST", "/api/v2/conversations/{conversationId}/cobrowse", "mutate"),
    Route("PATCH", "/api/v2/conversations/cobrowsesessions/{conversationId}", "mutate"),
    Route("PATCH", "/api/v2/conversations/messages/{conversationId}", "mutate"),
    Route("PATCH", "/api/v2/conversations/messages/{conversationId}/participants/{participantId}", "mutate"),
    # Reads: failures without an effect.
    Route("GET", "/api/v2/conversations/{conversationId}", "read"),
    Route("GET", "/api/v2/conversations/messages/{conversationId}", "read"),
    Route("GET", "/api/v2/conversations/messages/{conversationId}/messages/{messageId}", "read"),
    Route("POST", "/api/v2/conversations/messages/{conversationId}/messages/bulk", "read"),
    Route("POST", "/api/v2/analytics/conversations/details/query", "read"),
    # The guest worker's REST calls (its websockets are left alone): transient failures and latency.
    Route("POST", "/api/v2/webchat/guest/conversations", "guest"),
    Route("POST", "/api/v2/webchat/guest/conversations/{conversationId}/members/{memberId}/messages", "guest"),
    Route("GET", "/api/v2/webchat/guest/conversations/{conversationId}/messages", "guest"),
    Route("GET", "/api/v2/webmessaging/messages", "guest"),
)


class FaultDraw:
    """The seeded mix: which fault the next call on a route of a class gets."""

    def __init__(self, rates: FaultRates, seed: int) -> None:
        self.rates = rates
        self.rng = random.Random(f"genesys-faults-{seed}")

    def kind(self, klass: RouteClass) -> Kind:
        r = self.rates
        weights: list[tuple[Kind, float]] = [("503", r.unavailable_503), ("429", r.rate_limited_429)]
        if klass == "mutate":
            weights += [("409", r.conflict_409), ("lost_answer", r.lost_answer)]
        roll = self.rng.random()
        for kind, p in weights:
            if roll < p:
                return kind
            roll -= p
        return "latency"

    def spec(self, route: Route) -> tuple[Kind, FaultSpec]:
        kind = self.kind(route.klass)
        slow = self.rng.random() < self.rates.slow_share
        low, high = self.rates.slow_latency_ms if slow else self.rates.latency_ms
        latency = self.rng.randint(max(1, low), max(1, high))
        base = {"method": route.method, "path": route.path, "latency_ms": latency}
        extra: dict[str, object] = {
            "409": {"status": 409, "code": "request.conflict"},
            "503": {"status": 503},
            "429": {"status": 429, "retry_after_s": self.rates.retry_after_s},
            "lost_answer": {"drop": "after"},
            "latency": {},
        }[kind]
        return kind, FaultSpec.model_validate(base | extra)


class FaultMix:
    """The mix, installed on the emulator's own fault injector: its ``take`` (what the gateway asks for
    every call) first gives the admin-added faults their documented turn, then draws from the mix. The
    injector object stays the one every part of the emulator holds."""

    def __init__(self, injector: FaultInjector, draw: FaultDraw, routes: tuple[Route, ...] = ROUTES) -> None:
        self.draw = draw
        self.enabled = False
        self.counts: Counter[str] = Counter()
        self._compiled = [(route, route.pattern) for route in routes]
        self._lock = threading.Lock()
        self._admin_take: Callable[[str, str], FaultSpec | None] = injector.take
        injector.take = self.take  # type: ignore[method-assign]

    def take(self, method: str, path: str) -> FaultSpec | None:
        spec = self._admin_take(method, path)
        if spec is not None or not self.enabled:
            return spec
        for route, pattern in self._compiled:
            if route.method == method.upper() and pattern.match(path):
                with self._lock:
                    kind, drawn = self.draw.spec(route)
                    self.counts[kind] += 1
                    self.counts[f"{route.klass}:{kind}"] += 1
                    self.counts["calls"] += 1
                return drawn
        return None
