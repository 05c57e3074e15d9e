"""The figures and violations of a run, as a table a person can read."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, ConfigDict

from chaos.config import ChaosConfig
from chaos.models import Violation
from chaos.recovery import Recovery

TYPES = ("message.send", "conversation.end", "chat.create", "cobrowse.start", "cobrowse.end",
         "guest.start", "guest.send", "guest.typing", "guest.end")
OUTCOMES = ("succeeded", "failed", "expired", "not ended")
MAX_IDS = 8


class Result(BaseModel):
    """Everything a run found, for the table and for tests."""

    model_config = ConfigDict(extra="forbid")

    config: ChaosConfig
    violations: list[Violation]
    figures: dict[str, int | float | str]
    notes: list[str]
    reasons: dict[str, int]
    recoveries: list[Recovery]
    injected: dict[str, int]
    elapsed: dict[str, float]
    leftovers: list[str]

    @property
    def passed(self) -> bool:
        return not self.violations and not self.leftovers

    def checks_failed(self) -> list[str]:
        return sorted({v.check for v in self.violations})


def _row(cells: list[str], widths: list[int]) -> str:
    return "  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [_row(header, widths), _row(["-" * w for w in widths], widths), *(_row(r, widths) for r in rows)]


def render(result: Result) -> str:
    c, f = result.config, result.figures
    lines = [f"Parley chaos run, seed {c.seed}",
             f"  replay: python -m chaos --seed {c.seed} --commands {c.commands} --guests {c.guests} "
             f"--celery-kills {c.celery_kills} --guest-kills {c.guest_kills} --redis-restarts {c.redis_restarts}",
             f"  load: {c.commands} REST commands (+{f.get('duplicates submitted', 0)} duplicates, "
             f"+{f.get('invalid submitted', 0)} invalid in {f.get('invalid kinds', 0)} ways), {c.guests} guest "
             f"sessions; {c.celery_workers} Celery workers x {c.celery_concurrency}, {c.guest_workers} guest workers",
             "", "Commands by outcome"]
    rows = [[t, *(str(f.get(f"{t} {o}", 0)) for o in OUTCOMES)] for t in TYPES]
    rows.append(["all", *(str(f.get(f"all {o}", 0)) for o in OUTCOMES)])
    lines += _table(["type", *OUTCOMES], rows)
    lines += ["", f"Duplicates: {f.get('duplicates submitted', 0)} submitted, "
              f"{f.get('duplicates answered', 0)} answered command.duplicate",
              f"Dead letters: {f.get('invalid submitted', 0)} invalid submitted, "
              f"{f.get('dead letters (invalid, matched)', 0)} dead-lettered with a reason, "
              f"{f.get('rejections (matched)', 0)} matched command.rejected "
              f"({f.get('command.rejected events', 0)} rejected events, {f.get('dead letters (all)', 0)} dead letters "
              "in all)"]
    lines += ["", "Failure reasons"]
    if result.reasons:
        lines += _table(["count", "reason"], [[str(n), r] for r, n in sorted(result.reasons.items(),
                                                                               key=lambda x: -x[1])])
    else:
        lines.append("  none")
    lines += ["", "Guest messages",
              f"  guest -> agent: {f.get('guest->agent sent', 0)} sent, {f.get('guest->agent received once', 0)} "
              f"received once, {f.get('guest->agent lost', 0)} lost, {f.get('guest->agent doubled', 0)} doubled",
              f"  agent -> guest: {f.get('agent->guest sent', 0)} sent, {f.get('agent->guest relayed once', 0)} "
              f"relayed once, {f.get('agent->guest lost', 0)} lost, {f.get('agent->guest doubled', 0)} doubled"]
    inj = Counter(result.injected)
    lines += ["", f"Genesys faults injected on {inj.get('calls', 0)} calls: {inj.get('409', 0)} x 409, "
              f"{inj.get('503', 0)} x 503, {inj.get('429', 0)} x 429 (Retry-After), {inj.get('lost_answer', 0)} "
              f"answers lost after the call took effect, {inj.get('latency', 0)} latency only"]
    lines += ["", f"Faults and recovery (limit {c.recovery_limit_s:g} s after the fault ended)"]
    rec_rows = [[str(i + 1), r.kind, r.target, f"{r.lasted_s:.1f}", str(r.in_flight), str(r.charged),
                 "LOST" if r.recovery_s is None else f"{r.recovery_s:.1f}",
                 "LOST" if r.recovery_all_s is None else f"{r.recovery_all_s:.1f}"]
                for i, r in enumerate(result.recoveries)]
    lines += _table(["#", "fault", "target", "lasted s", "in flight", "charged", "recovery s", "all touched s"],
                    rec_rows) if rec_rows else ["  none"]
    lines.append("  in flight: commands submitted before the fault and not ended as it struck; charged: those for "
                 "which it was the last fault (recovery s, the verdict's figure); all touched s: measured over every "
                 "command in flight, the delays of later faults included")
    lines += ["", "Extra effects",
              f"  messages {f.get('extra messages', 0)}, conversations {f.get('extra conversations', 0)}, "
              f"chats {f.get('extra chats', 0)}; chats of failed commands (reported) "
              f"{f.get('chats of failed commands (lost answers, reported)', 0)}; cobrowse sessions nobody owns, "
              f"ended by Parley {f.get('cobrowse sessions no command owns, ended', 0)}",
              f"  ledger: {f.get('messages sent (ledger)', 0)} messages, {f.get('conversations created (ledger)', 0)}"
              f" conversations, {f.get('chats created (ledger)', 0)} chats, "
              f"{f.get('cobrowse sessions started (ledger)', 0)} cobrowse sessions"]
    e = result.elapsed
    lines += ["", "Elapsed: " + ", ".join(f"{k} {v:.0f} s" for k, v in e.items())]
    for note in result.notes:
        lines.append(f"Note: {note}")
    if result.leftovers:
        lines += ["", "Processes left behind:", *(f"  {p}" for p in result.leftovers)]
    lines += ["", f"VERDICT: {'PASS' if result.passed else 'FAIL'} ({len(result.violations)} violations)"]
    for v in result.violations:
        ids = ", ".join(v.ids[:MAX_IDS]) + (f" (+{len(v.ids) - MAX_IDS} more)" if len(v.ids) > MAX_IDS else "")
        lines.append(f"  [{v.check}] {v.message}" + (f"\n      {ids}" if ids else ""))
    return "\n".join(lines)
