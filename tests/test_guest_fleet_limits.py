"""A guest worker under fleet-scale load: its lease survives session work, and adoption lives within the
deployment's connection budget. Real redis-server, the emulator on loopback, real websockets."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from harness.emulator_server import EmulatorServer, running_emulator
from tests.test_guest_worker import Harness, WorkerThread
from workers.guest.settings import GuestSettings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def emulator_server() -> Iterator[EmulatorServer]:
    with running_emulator() as server:
        yield server


@pytest.fixture
def harness(redis_url: str, emulator_server: EmulatorServer) -> Iterator[Harness]:
    h = Harness(redis_url, emulator_server)
    h.http.post("/__emulator/reset").raise_for_status()
    yield h
    h.close()


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# --- the lease never waits behind session work ---------------------------------------------------------


def test_lease_is_renewed_while_session_work_holds_every_redis_connection(harness: Harness) -> None:
    """Found at ten thousand sessions: every runner opening at once queued on the worker's shared Redis
    pool, the renewal queued behind them past its TTL, and the worker declared itself dead."""
    settings = GuestSettings(lease_ttl_ms=1000, renew_every_s=0.2, adopt_every_s=0.5, read_block_ms=200)
    thread = WorkerThread(harness.settings, settings).start()
    worker = thread.worker
    hold_s = 3.0  # three times the lease's TTL
    done = threading.Event()

    async def hog() -> None:
        # Session work taking every pooled connection (and more queued behind it) for longer than the TTL.
        key = f"nothing-{uuid.uuid4().hex}"
        await asyncio.gather(*(worker.redis.blpop([key], timeout=hold_s) for _ in range(100)))
        done.set()

    try:
        thread.call_soon(lambda: asyncio.ensure_future(hog()))
        # Done, or the worker stopped itself (it would, having lost its lease).
        _wait_for(lambda: done.is_set() or worker.stopping.is_set(), 30, "the session work to finish")
        assert not worker.lease_lost, "the worker lost its lease while its sessions kept Redis busy"
        assert not worker.stopping.is_set()
        assert harness.client.exists(f"parley:guest:worker:{worker.worker_id}")
    finally:
        thread.stop()
