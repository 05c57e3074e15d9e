"""The verdict: every rule of the chaos suite, judged from the event stream, the dead letters and the
emulator's ledger (never from Parley's own records), plus which workers died on their own.

:func:`judge` runs each check module and gathers their violations and figures.
"""

from __future__ import annotations

from collections import Counter

from chaos.cluster import Death
from chaos.driver import Submitted
from chaos.effects import check_rest
from chaos.faults import FaultRecord
from chaos.guestcheck import check_guests
from chaos.load import Plan
from chaos.models import Findings
from chaos.observe import Observed
from chaos.ordercheck import check_order
from chaos.outcomes import Outcomes, permanent, reason_class
from chaos.recovery import Recovery, check_recovery


def judge(plan: Plan, submitted: Submitted, observed: Observed, faults: list[FaultRecord], deaths: list[Death],
          down: list[str], targets: set[str], limit_s: float) -> tuple[Findings, list[Recovery], Counter[str]]:
    outcomes = Outcomes(observed.events)
    found = Findings()
    reasons = _commands(plan, submitted, outcomes, found)
    _invalid(plan, submitted, outcomes, observed, found)
    found.merge(check_rest(plan, outcomes, observed, targets))
    found.merge(check_guests(plan, outcomes, observed))
    found.merge(check_order(plan, outcomes))
    recovered, recoveries = check_recovery(plan, submitted, outcomes, faults, limit_s)
    found.merge(recovered)
    died: Counter[tuple[str, int, str]] = Counter()
    for death in deaths:
        error = next((line for line in death.log_tail.splitlines()[::-1] if "Error" in line), "")
        died[(death.name, death.returncode, error.strip()[:200])] += 1
    for (name, returncode, error), times in died.items():
        found.add("every worker up", f"{name} died on its own{f' {times} times' if times > 1 else ''} "
                  f"(exit {returncode}; restarted by the harness): {error}", [name])
    if down:
        found.add("every worker up", "not running at the end", down)
    return found, recoveries, reasons


def _commands(plan: Plan, submitted: Submitted, outcomes: Outcomes, found: Findings) -> Counter[str]:
    """Every valid command ended exactly once; duplicates answered ``command.duplicate``; failures are
    permanent. Returns the failure reasons by kind."""
    reasons: Counter[str] = Counter()
    guest_commands = [c for s in plan.guests for c in [s.start, *s.sends, s.typing, s.end]]
    everything = [(c.key, c.type, c.expired, c.copies) for c in plan.commands.values()]
    everything += [(c["idempotency_key"], c["type"], False, 1) for c in guest_commands]
    for key, kind, expired, copies in everything:
        if key not in submitted.at:
            found.add("every command submitted", f"{key} was never submitted (the run was cut short)", [key])
            continue
        ends = outcomes.terminals(key)
        outcome = ends[0].data["type"].removeprefix("command.") if ends else "not ended"
        found.count(f"{kind} {outcome}")
        found.count(f"all {outcome}")
        if not ends:
            found.add("ended exactly once", f"{key} ({kind}) never ended: lost", [key])
        elif len(ends) > 1:
            found.add("ended exactly once", f"{key} ({kind}) ended {len(ends)} times: "
                      f"{', '.join(e.data['type'] for e in ends)}", [key])
        if ends and expired != (outcome == "expired"):
            found.add("ended exactly once", f"{key} ended {outcome}; its expires_at "
                      f"{'had' if expired else 'had not'} passed", [key])
        if ends and outcome == "failed":
            reason = str(ends[0].data.get("reason", ""))
            ok = permanent(ends[0].data)
            reasons[("permanent: " if ok else "NOT permanent: ") + f"{kind}: {reason_class(reason)}"] += 1
            if not ok:
                found.add("failures are permanent", f"{key} ({kind}) failed: {reason}",
                          [key, str(ends[0].data.get("command_id"))])
        duplicates = len(outcomes.of_type(key, "command.duplicate"))
        found.count("duplicates answered", duplicates)
        found.count("duplicates submitted", copies - 1)
        if duplicates != copies - 1:
            found.add("duplicates answered command.duplicate", f"{key} was submitted {copies} times and answered "
                      f"command.duplicate {duplicates} times", [key])
        accepted = len(outcomes.of_type(key, "command.accepted"))
        if accepted != 1:
            found.add("ended exactly once", f"{key} was accepted {accepted} times", [key])
    return reasons


def _invalid(plan: Plan, submitted: Submitted, outcomes: Outcomes, observed: Observed, found: Findings) -> None:
    """Every invalid command is a dead letter with a reason, answered ``command.rejected``, never accepted."""
    dead = {str(d.data.get("source_entry_id")): d for d in observed.dead if d.data.get("stage") == "ingest"}
    rejected_by_entry = {str(e.data.get("source_entry_id")) for e in outcomes.rejected if e.data.get("source_entry_id")}
    rejected_by_key = Counter(str(e.data.get("idempotency_key")) for e in outcomes.rejected)
    unnamed_rejections = sum(1 for e in outcomes.rejected if not e.data.get("source_entry_id"))
    unnamed_needed = 0
    kinds: Counter[str] = Counter()
    for bad in plan.invalid:
        entry_id = submitted.invalid.get(bad.index)
        if entry_id is None:
            continue
        kinds[bad.kind] += 1
        letter = dead.get(entry_id)
        if letter is None or not letter.data.get("reason"):
            found.add("invalid commands dead-lettered", f"invalid entry {entry_id} ({bad.kind}) is not in parley:dead "
                      "with a reason", [entry_id])
        else:
            found.count("dead letters (invalid, matched)")
        if entry_id in rejected_by_entry or (bad.key is not None and rejected_by_key.get(bad.key)):
            found.count("rejections (matched)")
        else:
            unnamed_needed += 1
        if bad.key is not None and outcomes.of_type(bad.key, "command.accepted"):
            found.add("invalid commands dead-lettered", f"invalid entry {entry_id} ({bad.kind}) was accepted",
                      [bad.key])
    if unnamed_needed > unnamed_rejections:
        found.add("invalid commands answered command.rejected", f"{unnamed_needed - unnamed_rejections} invalid "
                  "commands without a command.rejected event")
    found.figures["invalid submitted"] = sum(kinds.values())
    found.figures["invalid kinds"] = len(kinds)
    found.figures["dead letters (all)"] = len(observed.dead)
    found.figures["command.rejected events"] = len(outcomes.rejected)
