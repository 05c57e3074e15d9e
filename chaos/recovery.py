"""Recovery time per fault: how long after the fault ended until every command it touched has its outcome.

A command is touched by a fault when it was in flight as the fault struck: submitted before, ended
after (or never). Celery kills touch REST commands, guest worker kills guest commands, a Redis
restart every command. A command touched by several faults is charged to the latest one (its wait
after an earlier fault is the later fault's doing). Times come from the stream ids of the terminal
events, which Redis stamps with the clock the harness reads too.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from chaos.driver import Submitted
from chaos.faults import FaultRecord
from chaos.load import Plan
from chaos.models import Findings
from chaos.outcomes import Outcomes


class Recovery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    target: str
    started_at: float
    lasted_s: float
    in_flight: int
    charged: int
    recovery_s: float | None  # over the commands charged to it; None: one never ended
    recovery_all_s: float | None  # over every command it touched, later faults' delays included
    slowest: list[str]


def check_recovery(plan: Plan, submitted: Submitted, outcomes: Outcomes, faults: list[FaultRecord],
                   limit_s: float) -> tuple[Findings, list[Recovery]]:
    found = Findings()
    guest_keys = {c["idempotency_key"] for s in plan.guests for c in [s.start, *s.sends, s.typing, s.end]}
    rest_keys = set(plan.commands)
    types = {k: c.type for k, c in plan.commands.items()}
    types |= {c["idempotency_key"]: c["type"] for s in plan.guests for c in [s.start, *s.sends, s.typing, s.end]}
    end_s: dict[str, float | None] = {}
    for key in rest_keys | guest_keys:
        final = outcomes.final(key)
        end_s[key] = final.ms / 1000 if final else None
    touched: dict[int, list[str]] = {i: [] for i in range(len(faults))}
    charged: dict[int, list[str]] = {i: [] for i in range(len(faults))}
    ordered = sorted(range(len(faults)), key=lambda i: faults[i].started_at)
    for key, at in submitted.at.items():
        ended = end_s.get(key)
        latest: int | None = None
        for i in ordered:
            fault = faults[i]
            applies = fault.kind == "redis" or (key in guest_keys) == (fault.kind == "guest")
            if applies and at < fault.started_at and (ended is None or ended > fault.started_at):
                touched[i].append(key)
                latest = i
        if latest is not None:
            charged[latest].append(key)
    out: list[Recovery] = []
    for i, fault in enumerate(faults):
        keys = charged[i]
        lost = [k for k in keys if end_s.get(k) is None]
        waits = sorted(((end_s[k] or 0) - fault.ended_at, k) for k in keys if end_s.get(k) is not None)
        recovery = None if lost else max([0.0, *(w for w, _k in waits)])
        every = touched[i]
        recovery_all = None if any(end_s.get(k) is None for k in every) else max(
            [0.0, *((end_s[k] or 0) - fault.ended_at for k in every)])
        slowest = [f"{k} ({types.get(k)}, never ended)" for k in lost[:5]] or [
            f"{k} ({types.get(k)}, +{w:.0f} s)" for w, k in waits[-5:]][::-1]
        out.append(Recovery(kind=fault.kind, target=fault.target, started_at=fault.started_at,
                            lasted_s=round(fault.ended_at - fault.started_at, 2), in_flight=len(touched[i]),
                            charged=len(keys), recovery_s=None if recovery is None else round(recovery, 2),
                            recovery_all_s=None if recovery_all is None else round(recovery_all, 2),
                            slowest=slowest))
        label = f"{fault.kind} {fault.target}"
        if fault.error:
            found.add("faults carried out", f"{label}: {fault.error}")
        if recovery is None:
            found.add("recovery time", f"{label}: {len(lost)} command(s) it touched never ended", lost)
        elif recovery > limit_s:
            found.add("recovery time", f"{label}: {recovery:.1f} s until every command it touched ended "
                      f"(limit {limit_s:g} s)", slowest)
    return found, out
