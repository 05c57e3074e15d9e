"""Order: commands about one conversation or one customer ended in the order ingest accepted them.

Judged from the event stream alone: each command's order keys are the ones Parley gives it
(:func:`parley.ordering.order_keys`: its conversation; a ``message.send``'s customer); along each key,
sorted by their ``command.accepted`` events, the commands' terminal events must come in the same order.
A command that never ended or was never accepted is left to the other checks.
"""

from __future__ import annotations

import json
from collections import defaultdict
from itertools import pairwise
from typing import NamedTuple

from chaos.load import Plan
from chaos.models import Findings
from chaos.outcomes import Outcomes
from parley.ordering import order_keys
from schemas.validation import parse_command


class _Seen(NamedTuple):
    accepted: tuple[int, int]
    ended: tuple[int, int]
    key: str


def _position(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def check_order(plan: Plan, outcomes: Outcomes) -> Findings:
    found = Findings()
    lines: dict[str, list[_Seen]] = defaultdict(list)
    for command in plan.commands.values():
        accepted = outcomes.of_type(command.key, "command.accepted")
        end = outcomes.final(command.key)
        if not accepted or end is None:
            continue
        seen = _Seen(_position(accepted[0].id), _position(end.id), command.key)
        for name in order_keys(parse_command(json.dumps(command.body))):
            lines[name].append(seen)
    found.count("order keys with several commands", sum(1 for line in lines.values() if len(line) > 1))
    for line in lines.values():
        line.sort()
        for earlier, later in pairwise(line):
            if later.ended < earlier.ended:
                found.add("ordered per conversation and customer",
                          f"{later.key} ended before {earlier.key}, which ingest accepted before it",
                          [earlier.key, later.key])
    return found
