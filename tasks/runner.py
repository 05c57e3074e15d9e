"""Carry out one command, exactly once in effect: the path every REST command task goes through.

A Celery message only names the command (:class:`CommandRef`); the body, with any customer text,
stays in Redis. Before the handler runs, the runner checks the command record: a finished command
is never run again (a redelivered or duplicated message), an expired one is not run at all, and one
whose previous attempt died mid-call runs with ``recovering=True`` so its handler looks Genesys up
before acting again. Only one execution runs at a time (a renewed lease). Errors go to the retry
policy; the outcome is written to the record and the event stream in one Redis transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import redis
from kombu.exceptions import OperationalError

from genesys.errors import GenesysError
from genesys.lanes import line_ticket
from genesys.ratelimit import RateBudgetWait
from parley import keys, logs, metrics, tracing
from parley.events import EventLog
from parley.hints import CONVERSATION_ENDED, hint_for
from parley.ordering import Sequencer, lists_of
from parley.outcomes import Outcomes, StagedWrite, about
from parley.records import CommandRecord, Records, State
from parley.settings import Settings
from parley.state_cache import LeaseTimeout, StateCache
from schemas.commands import COMMAND_ADAPTER, Command
from schemas.common import Lane, utcnow
from schemas.events import (
    CommandFailed,
    CommandResult,
    CommandRetrying,
    GenesysErrorInfo,
)
from tasks.context import HANDLERS, ExecutionContext, NotYet, Refused
from tasks.dispatch import CommandRef
from tasks.lease import RenewedLease
from tasks.retry_policy import Decision, Permanent, Retry, RetryPolicy

if TYPE_CHECKING:
    from genesys.client import GenesysClient

log = logging.getLogger("parley.runner")

LOST_RECORD = "the command's record is gone (older than the idempotency retention); not executed"


@dataclass(frozen=True)
class RetryLater(Exception):
    """The runner asks the Celery layer to run this command again after ``delay_s``."""

    delay_s: float
    reason: str
    counts_as_attempt: bool = True


@dataclass(frozen=True)
class Outcome:
    state: State
    result: CommandResult | None = None
    reason: str | None = None
    """Why a failed command failed (Parley's words, never customer text)."""
    error: GenesysErrorInfo | None = None


class Runner:
    def __init__(self, client: redis.Redis, settings: Settings,
                 genesys_factory: Callable[[str, str, Lane], GenesysClient] | None = None,
                 publish: Callable[[CommandRef], None] | None = None) -> None:
        """``genesys_factory(org, command_id, lane)`` gives the Genesys client of an execution of the command."""
        self.client = client
        self.settings = settings
        self.records = Records(client, settings)
        self.events = EventLog(client, settings)
        self.outcomes = Outcomes(client, settings)
        self.genesys_factory = genesys_factory
        self.policy = policy_from(settings)
        self.sequencer = Sequencer(client)
        self.publish = publish
        """Hands a command whose turn came (:mod:`parley.ordering`) to Celery; unset: the sweeper does."""

    # -- entry point -------------------------------------------------------------------------
    def run(self, ref: CommandRef) -> Outcome:
        lease = RenewedLease(self.client, keys.execution_lease(ref.command_id), self.settings.execution_lease_ms)
        started = utcnow().isoformat()
        if not self.sequencer.ready(ref.command_id):
            # A duplicated or re-published message of a command whose turn has not come: it is published
            # again when the earlier command on its conversation or customer finishes.
            log.info("command %s waits for an earlier command on its conversation or customer", ref.command_id)
            return Outcome(State.accepted)
        begun = self.records.begin(ref.command_id, lease.key, lease.token, lease.ttl_ms, started)
        if begun.status == "missing":
            return self._lost_record(ref)
        if begun.status == "busy":
            # Another execution holds it: a duplicate message, or a dead worker's lease not yet expired.
            metrics.retry(ref.type, "lease_busy")
            raise RetryLater(max(0.5, begun.lease_pttl_ms / 1000), "another execution holds the lease", False)
        record = begun.record
        assert record is not None
        if begun.status == "terminal":
            log.info("command %s already %s; delivery skipped", ref.command_id, record.state.value)
            self._next_in_order(record)  # in case the execution that ended it died before doing so
            return Outcome(record.state)
        lease.keep_renewing()
        try:
            with logs.command_span(record), tracing.processing(keys.CELERY_QUEUE, record.traceparent,
                                                               record.command_id, record.type):
                outcome = self._begun(record, started)
        except BaseException:
            lease.release()
            raise
        lease.stop_renewing()  # the transaction that ended the command deleted the lease with it
        self._next_in_order(record)
        return outcome

    # -- steps -------------------------------------------------------------------------------
    def _begun(self, record: CommandRecord, started: str) -> Outcome:
        """Every return ends the command (succeeded, failed, expired) in one transaction; else it raises."""
        command = COMMAND_ADAPTER.validate_json(record.body)
        if command.expires_at is not None and command.expires_at <= utcnow():
            return self._expire(record, command)
        if record.crashes > self.settings.max_crash_redeliveries:
            return self._fail(record, f"the worker died {record.crashes} times while executing this command", None)
        return self._execute(record, command, started)

    def _execute(self, record: CommandRecord, command: Command, started: str) -> Outcome:
        # ``record`` is as it was before this attempt (begin() already marked it running). An attempt
        # left "running" died mid-call; one marked unknown_outcome failed after the request may have
        # left. Either way Genesys may hold its effect: the handler must look before acting.
        died = record.state is State.running
        recovering = died or record.unknown_outcome
        unknown_since = record.unknown_since or (record.started_at if died else None)
        unknown_until = started if died else record.unknown_until
        attempt = record.attempts + 1
        record = record.model_copy(update={
            "started_at": started, "unknown_since": unknown_since if recovering else None,
            "unknown_until": unknown_until if recovering else None})
        handler = HANDLERS.get(command.type)
        if handler is None:
            return self._fail(record, f"no handler for {command.type} in this worker", None)
        ctx = ExecutionContext(
            settings=self.settings, redis=self.client, command_id=record.command_id, attempt=attempt,
            recovering=recovering,
            previous_attempt_started_at=_when(unknown_since) if recovering else None,
            unknown_until=_when(unknown_until) if recovering else None,
            genesys_factory=self._genesys_of(record, command.lane),
        )
        try:
            result = handler(ctx, command)
        except LeaseTimeout:
            # Another command on the same customer/conversation holds it: wait, without using an attempt.
            self._park(record, recovering)
            metrics.retry(record.type, "lease_wait")
            raise RetryLater(1.0, "another command on the same customer or conversation is running", False) from None
        except (NotYet, RateBudgetWait) as later:  # nothing this execution did needs undoing: come back later
            self._park(record, recovering)
            log.info("command %s waits %.1f s: %s", record.command_id, later.delay_s, later.reason)
            metrics.retry(record.type, "rate_budget" if isinstance(later, RateBudgetWait) else "not_yet")
            raise RetryLater(later.delay_s, later.reason, False) from None
        except Refused as refused:
            return self._fail(record.model_copy(update={"attempts": attempt}), refused.reason, None, refused.hint)
        except redis.RedisError:
            raise  # Redis is away, not Genesys: the task layer retries when it is back (the record says running)
        except Exception as exc:  # every failure goes to the one retry policy
            return self._on_error(record, attempt, exc, recovering)
        else:
            outcome = self._succeed(record, result, ctx.success_writes())
            ctx.committed()
            return outcome
        finally:
            ctx.release_held()  # leases not released by a success's commit (failure, retry, Redis error)

    def _genesys_of(self, record: CommandRecord, lane: Lane) -> Callable[[], GenesysClient] | None:
        """The client of the command's org, made when the handler first asks for it."""
        factory = self.genesys_factory
        return None if factory is None else lambda: factory(record.org, record.command_id, lane)

    def _park(self, record: CommandRecord, recovering: bool) -> None:
        """Back to accepted without using an attempt; a recovering command stays recovering (a record
        left by a dead attempt says so only by its state, which this overwrites)."""
        self.records.set_fields(record.command_id, state=State.accepted.value, attempts=record.attempts,
                                unknown_outcome=int(recovering), **_unknown_window(record))

    def _on_error(self, record: CommandRecord, attempt: int, exc: Exception, recovering: bool) -> Outcome:
        decision: Decision = self.policy.decide(exc, attempt - 1, record.type)
        error = error_info(exc)
        if not isinstance(exc, GenesysError):
            log.exception("command %s (%s) raised", record.command_id, record.type)
        if isinstance(decision, Retry):
            metrics.retry(record.type, decision.kind.value)
            pipe = self.client.pipeline(transaction=True)
            # A known answer now does not settle what an earlier lost attempt did: still recovering.
            unknown = decision.outcome_unknown or recovering
            fields: dict[str, str | int] = {"state": State.accepted.value, "unknown_outcome": int(unknown),
                                            **_unknown_window(record)}
            if decision.outcome_unknown:
                fields["unknown_until"] = utcnow().isoformat()  # the effect, if any, happened before now
                if not record.unknown_since and record.started_at:
                    fields["unknown_since"] = record.started_at  # ... and after this
            self.records.set_fields(record.command_id, pipe, **fields)
            self.events.append(CommandRetrying(**about(record), attempt=attempt, delay_s=decision.delay_s,
                                               reason=decision.reason, error=error), pipe)
            pipe.execute()
            log.info("retrying in %.1f s (attempt %d): %s%s", decision.delay_s, attempt, decision.reason,
                     logs.genesys_said(error))
            raise RetryLater(decision.delay_s, decision.reason)
        hint = self._failure_hint(exc, decision, record)
        record = record.model_copy(update={"attempts": attempt})
        return self._fail(record, decision.reason, error, hint)

    def _failure_hint(self, exc: Exception, decision: Decision, record: CommandRecord) -> str | None:
        """The decision's own hint (a quota's wait), else the code's; a 404 about a conversation Parley
        knows ended says that, instead of guessing at wrong ids."""
        if isinstance(decision, Permanent) and decision.hint:
            return decision.hint
        if not isinstance(exc, GenesysError):
            return None
        conversation_id = COMMAND_ADAPTER.validate_json(record.body).targets.get("conversation_id")
        if exc.status == 404 and conversation_id and StateCache(self.client).ended(conversation_id):
            return CONVERSATION_ENDED
        return hint_for(exc.status, exc.code)

    def _succeed(self, record: CommandRecord, result: CommandResult, staged: list[StagedWrite]) -> Outcome:
        self.outcomes.succeed(record, result, staged=[*staged, *self._closing(record)])
        log.info("succeeded%s (conversation %s)", " (reused)" if result.reused else "", result.conversation_id)
        return Outcome(State.succeeded, result)

    def _fail(self, record: CommandRecord, reason: str, error: GenesysErrorInfo | None,
              hint: str | None = None) -> Outcome:
        self.outcomes.fail(record, reason, error, hint, staged=self._closing(record))
        log.warning("failed for good: %s%s", reason, logs.genesys_said(error))
        return Outcome(State.failed, reason=reason, error=error)

    def _expire(self, record: CommandRecord, command: Command) -> Outcome:
        assert command.expires_at is not None
        self.outcomes.expire(record, command.expires_at, staged=self._closing(record))
        return Outcome(State.expired)

    @staticmethod
    def _end_execution_lease(record: CommandRecord) -> StagedWrite:
        # Deleted without checking the token: the same transaction makes the command terminal, and a
        # terminal command is never executed again whoever holds its lease, so no check can matter.
        lease_key = keys.execution_lease(record.command_id)
        return lambda pipe: pipe.delete(lease_key)

    def _closing(self, record: CommandRecord) -> list[StagedWrite]:
        """What every ending commits with the outcome: the execution lease goes, the command leaves its
        order lists (:mod:`parley.ordering`), so no later command can start before it ended, and its org's
        rate-budget line (:mod:`genesys.lanes`), so no slot is handed to it once it is gone."""
        order = lists_of(record.order_keys)
        closing = [self._end_execution_lease(record), lambda pipe: Sequencer.leave(pipe, record.command_id, order)]
        ticket = line_ticket(self.settings, record.org, record.command_id)
        if ticket is not None:
            closing.append(lambda pipe: pipe.zrem(*ticket))
        return closing

    def _next_in_order(self, record: CommandRecord) -> None:
        """Publish the commands that waited for this finished one and whose turn came. A publish that fails
        (the broker stayed away past Celery's publish retries) fails the delivery as a Redis outage does: it
        is delivered again, finds the command finished and wakes the next ones again."""
        for woken in self.sequencer.wake(lists_of(record.order_keys)):
            log.info("command %s follows %s on its conversation or customer", woken.command_id, record.command_id)
            if self.publish is not None:
                try:
                    self.publish(CommandRef(**asdict(woken)))
                except OperationalError as exc:
                    raise redis.ConnectionError(f"could not publish command {woken.command_id}") from exc

    def _lost_record(self, ref: CommandRef) -> Outcome:
        log.error("command %s has no record (retention passed before execution?)", ref.command_id)
        self.events.append(CommandFailed(
            idempotency_key=ref.idempotency_key, command_type=ref.type, command_id=ref.command_id, org=ref.org,
            reason=LOST_RECORD,
        ))
        return Outcome(State.failed, reason=LOST_RECORD)


def _when(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


def _unknown_window(record: CommandRecord) -> dict[str, str]:
    """The record's unknown-outcome window as fields to keep (a dead attempt's is not yet stored)."""
    return {name: value for name in ("unknown_since", "unknown_until") if (value := getattr(record, name))}


def policy_from(settings: Settings) -> RetryPolicy:
    return RetryPolicy(base_s=settings.retry_base_s, cap_s=settings.retry_cap_s,
                       max_attempts=settings.retry_max_attempts, max_delay_s=settings.retry_max_delay_s,
                       retry_after_max_s=settings.retry_after_max_s, overrides=settings.retry_overrides)


def error_info(exc: BaseException) -> GenesysErrorInfo | None:
    if not isinstance(exc, GenesysError):
        return None
    return GenesysErrorInfo(status=exc.status, code=exc.code or None, message=exc.message or None,
                            contextId=exc.context_id, messageParams=exc.message_params or None)
