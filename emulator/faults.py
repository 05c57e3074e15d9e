"""Fault injection: make chosen calls fail, slow down or lose their connection.

A fault matches calls by method and path pattern and fires for the next N matching calls or with a
probability. When it fires it can delay the call (``latency_ms``), then either answer an error
(``status`` + ``code``, an ErrorBody like Genesys'), drop the connection before the call has any
effect (``drop: "before"``), perform the call and drop the connection instead of answering
(``drop: "after"`` - the "did it happen?" case an exactly-once client must survive), or hold the
call without answering until the client gives up (``drop: "hang"``).

Faults apply to Genesys routes (``/api/...``, ``/oauth/...``), never to ``/__emulator/...``.
"""

from __future__ import annotations

import random
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from emulator.errors import DEFAULT_CODE_FOR_STATUS, ApiError, default_message, rate_limited

NO_EFFECT = "emulator.no_effect"
"""Request-state flag of a ``no_effect`` fault; the disconnect handlers honour it."""


class ConnectionDropped(Exception):
    """Raised where a dropped connection cannot be produced (an in-process ASGI transport)."""


class FaultSpec(BaseModel):
    """Body of ``POST /__emulator/faults``."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(default="*", description="HTTP method, or * for any.")
    path: str = Field(
        description="Path pattern: literal segments, {name} or * for one segment, ** for any rest. "
        "E.g. /api/v2/conversations/{id}/cobrowse or /api/v2/webchat/**",
    )
    status: int | None = Field(default=None, ge=400, le=599, description="Answer this error status.")
    code: str | None = Field(default=None, description="ErrorBody code; default from the status.")
    message: str | None = Field(default=None, description="ErrorBody message; default Genesys' text.")
    retry_after_s: int | None = Field(default=None, ge=0, description="Retry-After (429/503).")
    latency_ms: int = Field(default=0, ge=0, description="Delay before answering or handling.")
    drop: Literal["before", "after", "hang"] | None = None
    no_effect: bool = Field(
        default=False,
        description="Answer as if done but change nothing (disconnect PATCHes: seed 002's 'PATCH said 200 but "
        "nothing changed').",
    )
    hang_ms: int | None = Field(default=None, ge=0, description="Longest a 'hang' holds the call.")
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    times: int | None = Field(default=None, ge=1, description="Fire for the next N matches, then retire.")
    seed: int | None = Field(default=None, description="Own RNG seed for a reproducible probability.")

    @model_validator(mode="after")
    def _one_effect(self) -> Self:
        if self.status is not None and self.drop is not None:
            raise ValueError("a fault either answers a status or drops the connection, not both")
        if self.no_effect and (self.status is not None or self.drop is not None):
            raise ValueError("a no_effect fault answers normally: no status, no drop")
        if self.status is None and self.drop is None and self.latency_ms == 0 and not self.no_effect:
            raise ValueError("a fault needs a status, a drop, a latency or no_effect")
        if self.code is not None and self.status is None:
            raise ValueError("code needs a status")
        return self

    def error(self) -> ApiError:
        """The ErrorBody answer of a status fault."""
        assert self.status is not None
        if self.status == 429 and self.code in (None, "too.many.requests.retry.after"):
            return rate_limited(self.retry_after_s if self.retry_after_s is not None else 1)
        code = self.code or DEFAULT_CODE_FOR_STATUS.get(self.status, "bad.request")
        headers = {"Retry-After": str(self.retry_after_s)} if self.retry_after_s is not None else {}
        return ApiError(self.status, code, message=self.message or default_message(code), headers=headers)


class FaultState(BaseModel):
    """A fault as listed by ``GET /__emulator/faults``."""

    id: str
    spec: FaultSpec
    matched: int = 0
    fired: int = 0
    remaining: int | None = None


class FaultList(BaseModel):
    faults: list[FaultState]


@dataclass
class _Fault:
    state: FaultState
    pattern: re.Pattern[str]
    rng: random.Random | None = field(default=None)


def compile_path(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    for segment in pattern.strip("/").split("/"):
        if segment == "**":
            parts.append(".*")
        elif segment == "*" or (segment.startswith("{") and segment.endswith("}")):
            parts.append("[^/]+")
        else:
            parts.append(re.escape(segment))
    return re.compile("^/" + "/".join(parts) + "/?$")


class FaultInjector:
    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._rng = random.Random(seed)
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()

    def add(self, spec: FaultSpec) -> FaultState:
        state = FaultState(id=str(uuid.uuid4()), spec=spec, remaining=spec.times)
        rng = random.Random(spec.seed) if spec.seed is not None else None
        with self._lock:
            self._faults.append(_Fault(state, compile_path(spec.path), rng))
        return state

    def list(self) -> list[FaultState]:
        with self._lock:
            return [f.state.model_copy(deep=True) for f in self._faults]

    def remove(self, fault_id: str) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.state.id != fault_id]
            return len(self._faults) != before

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._rng = random.Random(self._seed)

    def take(self, method: str, path: str) -> FaultSpec | None:
        """The fault that fires for this call, if any (the first matching fault in order added).

        A matching fault whose dice say no lets the call through; it does not pass the call on to the
        next fault, so one fault's probability is exactly what it says.
        """
        with self._lock:
            for fault in self._faults:
                spec = fault.state.spec
                if spec.method.upper() not in ("*", method.upper()) or not fault.pattern.match(path):
                    continue
                fault.state.matched += 1
                rng = fault.rng or self._rng
                if spec.probability < 1.0 and rng.random() >= spec.probability:
                    return None
                fault.state.fired += 1
                if fault.state.remaining is not None:
                    fault.state.remaining -= 1
                    if fault.state.remaining == 0:
                        self._faults.remove(fault)
                return spec
            return None
