"""The one retry policy: what to do after a command's Genesys call failed.

In the spirit of dramatiq's ``middleware/retries.py``: a small unit around the task instead of retry
logic inside every task. It is pure (no Celery, no clock, no I/O): given the exception, how many
retries were already made and the command type, it returns a :data:`Decision` that the task runner
carries out (``self.retry(countdown=...)`` or fail for good).

Rules, and why:

* 409 ``request.conflict``, 408, 5xx, timeouts and dropped connections are transient: exponential
  backoff with *full* jitter, ``uniform(0, min(cap, base * 2**attempt))`` (:mod:`parley.backoff`, the
  AWS "full jitter" variant, the same shape as Celery's ``retry_jitter``), so workers that collided on
  one conversation do not collide again in lockstep.
* 409 ``organization.outbound.usage.limit.exceeded`` is a 409 but not a conflict: the org is out of
  outbound quota and a retry minutes later is refused the same way, so it is permanent.
* 429 (and any retryable answer carrying ``Retry-After``) waits what Genesys asked for, at least a
  small floor, plus a little jitter so workers limited together do not come back together
  (:func:`parley.backoff.after_retry_after`). A 429 whose ``Retry-After`` is longer than
  ``retry_after_max_s`` is a used-up quota (daily or monthly: hours), not a rate limit: the command
  fails at once with a hint (:func:`parley.hints.quota_hint`) instead of being held for a day.
* Transport errors and 5xx mean the request may have been applied: the decision says
  ``outcome_unknown`` so the runner looks the object up in Genesys before acting again
  (lookup-before-create, reference celery-redis-reliability.md section 2). Not after a read (a GET,
  an analytics query, a bulk read: ``changed_nothing``): a read hides no effect, and saying so would
  make a recovering command wait for analytics all over again.
* 401 is permanent: the Genesys client (:mod:`genesys.client`) already refreshed the token once and
  sent again, so a 401 that reaches the policy means the client itself is wrong, not its token.
* 400 ``active.conversation`` is permanent: the ``message.send`` handler
  (:mod:`tasks.handlers.message_send`) owns that case; every send says
  ``useExistingActiveConversation``, so Genesys puts the message into the customer's live
  conversation instead of refusing it, and a refusal that still comes back will not change.
* Every other 4xx is permanent: the same request will be refused the same way. So is a 2xx whose body
  does not parse (``GenesysInvalidResponse``): the call took effect, and repeating it could repeat it.

No delay ever exceeds ``max_delay_s``: a Celery countdown longer than the Redis visibility timeout
makes the broker redeliver the waiting task and run it several times (kombu#337; reference section 1).

``attempt`` counts the retries already made, i.e. Celery's ``self.request.retries`` (0 on the first
run), and ``max_attempts`` counts executions including the first.

Retry-After arrives already parsed, in seconds, as ``GenesysError.rate_limit.retry_after_s``: the
HTTP client owns header parsing (an HTTP-date has to be read against the response's clock anyway),
so this policy needs no clock.
"""

from __future__ import annotations

import random
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from genesys.errors import (
    GenesysConnectionError,
    GenesysError,
    GenesysInvalidResponse,
    GenesysTimeout,
    GenesysTransportError,
)
from parley import backoff
from parley.backoff import Uniform
from parley.hints import quota_hint

# 409 codes that are not "try again later": the same request will be refused the same way.
PERMANENT_CONFLICT_CODES = frozenset({"organization.outbound.usage.limit.exceeded"})
ACTIVE_CONVERSATION = "active.conversation"

class RetryKind(StrEnum):
    CONFLICT = "conflict"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    REQUEST_TIMEOUT = "request_timeout"
    TIMEOUT = "timeout"
    CONNECTION = "connection"


class _Decision(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str


class Retry(_Decision):
    """Run the same request again after ``delay_s``."""

    action: Literal["retry"] = "retry"
    delay_s: float = Field(ge=0)
    kind: RetryKind
    # The failed request may have been applied: look Genesys up before sending it again.
    outcome_unknown: bool = False


class Permanent(_Decision):
    """Fail now: the same request would be refused the same way."""

    action: Literal["permanent"] = "permanent"
    hint: str | None = None
    """Advice that depends on more than the status and code (a quota's wait); else the code's hint applies."""


class Exhausted(_Decision):
    """A transient failure, but ``max_attempts`` executions were spent."""

    action: Literal["exhausted"] = "exhausted"
    attempts: int = Field(ge=1)
    kind: RetryKind
    # The last attempt may have been applied: reconcile with Genesys before dead-lettering.
    outcome_unknown: bool = False


Decision = Annotated[
    Retry | Permanent | Exhausted,
    Field(discriminator="action"),
]


class BackoffOverrides(BaseModel):
    """Per command type: any field left unset falls back to the policy's default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_s: float | None = Field(default=None, gt=0)
    cap_s: float | None = Field(default=None, gt=0)
    max_attempts: int | None = Field(default=None, ge=1)


class Backoff(BaseModel):
    """The effective backoff settings for one command type."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_s: float = Field(gt=0)
    cap_s: float = Field(gt=0)
    max_attempts: int = Field(ge=1)


class RetryPolicy(BaseModel):
    """Settings of the retry policy; :meth:`decide` applies them to one failure."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_s: float = Field(default=1.0, gt=0, description="First backoff window (seconds).")
    cap_s: float = Field(default=60.0, gt=0, description="Largest backoff window (seconds).")
    max_attempts: int = Field(default=8, ge=1, description="Executions including the first.")
    max_delay_s: float = Field(
        default=300.0, gt=0, description="Ceiling on any single delay; keep it below the visibility timeout."
    )
    retry_after_floor_s: float = Field(
        default=1.0, ge=0, description="Least wait on a Retry-After, so `Retry-After: 0` cannot spin."
    )
    retry_after_jitter_s: float = Field(
        default=1.0, ge=0, description="Up to this much is added to a Retry-After wait."
    )
    retry_after_max_s: float = Field(
        default=600.0, gt=0, description="Longest 429 Retry-After honoured; a longer one (a quota) fails the command."
    )
    overrides: dict[str, BackoffOverrides] = Field(
        default_factory=dict, description="Command type -> backoff overrides."
    )

    def backoff_for(self, command_type: str) -> Backoff:
        """The defaults with ``command_type``'s overrides applied."""
        merged = {"base_s": self.base_s, "cap_s": self.cap_s, "max_attempts": self.max_attempts}
        override = self.overrides.get(command_type)
        if override is not None:
            merged.update(override.model_dump(exclude_none=True))
        return Backoff(**merged)

    def check_visibility_timeout(self, visibility_timeout_s: float) -> None:
        """Raise ``ValueError`` unless every delay ends before the broker would redeliver the task."""
        if self.max_delay_s >= visibility_timeout_s:
            raise ValueError(
                f"max_delay_s={self.max_delay_s} must be below the visibility timeout "
                f"({visibility_timeout_s} s), or delayed retries run several times (kombu#337)"
            )

    def decide(
        self,
        exc: BaseException,
        attempt: int,
        command_type: str,
        *,
        rng: Uniform | None = None,
    ) -> Decision:
        """Classify one failure of a command's Genesys call.

        ``attempt``: retries already made (Celery ``request.retries``). Reasons name status and code
        only, never the error's message, which may echo customer input.
        """
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        if isinstance(exc, GenesysTransportError):
            kind, what = _transport_kind(exc)
            if exc.changed_nothing:
                return self._transient(f"a read {what}", kind, attempt, command_type, None, rng=rng)
            return self._transient(
                f"the request {what}; Genesys may have applied it",
                kind, attempt, command_type, None, outcome_unknown=True, rng=rng,
            )
        if isinstance(exc, GenesysInvalidResponse):
            # The call took effect; sending it again could repeat the effect.
            return Permanent(reason=f"{exc.status} with an unreadable body: the call took effect")
        if not isinstance(exc, GenesysError):
            # A bug or an unexpected library error: retrying it blindly could repeat a side effect.
            return Permanent(reason=f"unexpected {type(exc).__name__}")
        return self._decide_http(exc, attempt, command_type, rng)

    def _decide_http(self, exc: GenesysError, attempt: int, command_type: str, rng: Uniform | None) -> Decision:
        status, code = exc.status, exc.code
        label = f"{status} {code}".strip()
        if status == 401:  # after the client's own refresh
            return Permanent(reason=f"{label} (a fresh token does not help)")
        if status == 400 and code == ACTIVE_CONVERSATION:  # after the handler's send into it
            return Permanent(reason=f"{label} even when sending into the live conversation")
        transient = _transient_kind(status, code)
        if transient is None:
            return Permanent(reason=label)
        kind, outcome_unknown = transient
        if status == 429 and exc.retry_after_s is not None and exc.retry_after_s > self.retry_after_max_s:
            return Permanent(reason=f"{label}; Retry-After {exc.retry_after_s:g} s is beyond the "
                                    f"{self.retry_after_max_s:g} s Parley waits (a quota, not a rate limit)",
                             hint=quota_hint(exc.retry_after_s, self.retry_after_max_s))
        return self._transient(
            label, kind, attempt, command_type, exc.retry_after_s,
            outcome_unknown=outcome_unknown and not exc.changed_nothing, rng=rng,
        )

    def _transient(
        self,
        reason: str,
        kind: RetryKind,
        attempt: int,
        command_type: str,
        retry_after_s: float | None,
        *,
        outcome_unknown: bool = False,
        rng: Uniform | None,
    ) -> Retry | Exhausted:
        settings = self.backoff_for(command_type)
        if attempt + 1 >= settings.max_attempts:
            return Exhausted(
                reason=f"{reason}; gave up after {attempt + 1} attempts",
                attempts=attempt + 1, kind=kind, outcome_unknown=outcome_unknown,
            )
        source = rng if rng is not None else random
        if retry_after_s is not None:
            delay = backoff.after_retry_after(retry_after_s, self.retry_after_floor_s, self.retry_after_jitter_s,
                                              source)
            reason = f"{reason}; Retry-After {retry_after_s:g} s"
        else:
            delay = backoff.delay_s(attempt, settings.base_s, settings.cap_s, source)
        if delay > self.max_delay_s:
            delay = self.max_delay_s
            reason = f"{reason}; delay capped at {self.max_delay_s:g} s"
        return Retry(delay_s=delay, reason=reason, kind=kind, outcome_unknown=outcome_unknown)


def _transport_kind(exc: GenesysTransportError) -> tuple[RetryKind, str]:
    if isinstance(exc, GenesysTimeout):
        return RetryKind.TIMEOUT, "timed out"
    if isinstance(exc, GenesysConnectionError):
        return RetryKind.CONNECTION, "lost its connection"
    return RetryKind.CONNECTION, "failed in transport"


def _transient_kind(status: int, code: str) -> tuple[RetryKind, bool] | None:
    """(kind, outcome_unknown) of an HTTP answer worth retrying; None when it is permanent."""
    if status == 409 and code not in PERMANENT_CONFLICT_CODES:
        return RetryKind.CONFLICT, False
    if status == 429:
        return RetryKind.RATE_LIMITED, False
    if status == 408:
        # The server gave up waiting for the request itself: it was not processed.
        return RetryKind.REQUEST_TIMEOUT, False
    if status >= 500:
        # A 5xx (504 above all) can come after the change was applied behind the gateway.
        return RetryKind.SERVER_ERROR, True
    return None
