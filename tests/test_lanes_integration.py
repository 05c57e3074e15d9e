"""Priority lanes through the real pipeline (ingest, Celery workers, the emulator) on a budget of 60
requests a minute: a high command submitted behind a parked bulk backlog runs within a couple of slots,
while a high command about the same customer as a waiting bulk one still runs after it (order first)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.fixtures import SEED
from tests.support.events import await_events
from tests.support.pipeline import Pipeline, key, running_pipeline

BACKLOG = 12


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with running_pipeline(Path(tmp_path_factory.mktemp("lanes")), celery_concurrency=3,
                          PARLEY_GENESYS_RATE_LIMIT_PER_MINUTE="60") as p:
        yield p


def send(lane: str, contact: str | None = None) -> dict[str, Any]:
    return {"type": "message.send", "idempotency_key": key(lane), "lane": lane, "channel": "webmessaging",
            "from_address": SEED.deployments[0].id, "external_contact_id": contact or str(uuid.uuid4()),
            "text": "Your order has shipped"}


def succeeded(pipeline: Pipeline) -> list[str]:
    """Idempotency keys of succeeded commands, in the order they succeeded."""
    return [event["idempotency_key"] for _id, fields in pipeline.client.xrange("parley:events")
            if (event := json.loads(fields["event"]))["type"] == "command.succeeded"]


def test_a_high_command_overtakes_a_parked_bulk_backlog_but_not_its_customers_earlier_command(
        pipeline: Pipeline) -> None:
    pipeline.run(send("normal"))  # the workers are up and the token is fetched
    customer = str(uuid.uuid4())
    bulk = [send("bulk") for _ in range(BACKLOG - 1)] + [send("bulk", customer)]
    for command in bulk:
        pipeline.submit(command)
    bulk_keys = [c["idempotency_key"] for c in bulk]
    await_events(pipeline.client, lambda _: sum(k in bulk_keys for k in succeeded(pipeline)) >= 2, 60)
    overtaking, ordered = send("high"), send("high", customer)
    before = sum(k in bulk_keys for k in succeeded(pipeline))
    pipeline.submit(ordered)
    pipeline.submit(overtaking)
    assert pipeline.outcome(overtaking["idempotency_key"])["type"] == "command.succeeded"
    assert pipeline.outcome(ordered["idempotency_key"], timeout_s=90)["type"] == "command.succeeded"
    order = succeeded(pipeline)
    bulk_before_high = sum(k in bulk_keys for k in order[:order.index(overtaking["idempotency_key"])])
    # The slots already handed out (the burst) at most: not the ten still waiting in the bulk lane.
    assert bulk_before_high - before <= 3, (before, order)
    # Same customer: the high command waits for the bulk one submitted before it, wherever that is in line.
    assert order.index(ordered["idempotency_key"]) > order.index(bulk[-1]["idempotency_key"])
    assert bulk_before_high < BACKLOG - 3
