"""The guest worker: a long-lived asyncio process that holds guest sessions' websockets.

Celery never holds a socket: guest commands go from the ingestion worker to ``parley:guest:commands``
and from there to this process, which keeps thousands of sessions per process (one small runner
task per session, plus its socket reader) and runs side by side with other guest workers.

How the pieces fit (each in its own module):

* **Routing** (:mod:`workers.guest.routing`): one worker at a time holds the routing lease and reads
  ``parley:guest:commands`` through the consumer group ``parley-guest``. Each command is appended to
  its session's inbox and acknowledged in one script, then the owner's doorbell rings. A new session
  goes to the least busy live worker.
* **Ownership** (:mod:`workers.guest.ownership`): each session names its owner and a fencing token.
  A worker's claim lives as long as its lease (TTL ``lease_ttl_ms``, 10 s, renewed every 3 s). When a
  lease lapses the other workers adopt that worker's sessions (within TTL + ``adopt_every_s``); on
  SIGTERM a worker closes its sockets and releases its lease at once and announces it, so adoption
  is immediate.
* **Persistence** (:mod:`workers.guest.store`): per session the inbox, the command in hand, the relay
  set (agent messages, joins and the end, each appended once), the web messaging relay checkpoint,
  and, under a separate key with the session's lifetime as TTL, the session token or guest JWT that
  resuming needs. Secrets never go into events, logs, task arguments or the public state cache.
* **Connection budget** (:mod:`workers.guest.budget`): every socket a session opens waits for a slot
  of its deployment's token bucket in Redis, shared by the fleet, so adoption or a fleet restart stays
  under Genesys' 1,000 new connections a minute per deployment.
* **Sessions** (:mod:`workers.guest.session`): the runner that drives one sans-I/O machine
  (:mod:`guest.webmessaging`, :mod:`guest.guestchat`) over python-websockets and the Genesys client
  (:mod:`workers.guest.network`), and ends commands through :class:`parley.outcomes.Outcomes`.

Loops of this process: lease renewal (and the routing lease, and the ``parley status`` heartbeat
``parley:heartbeat:guest:<worker>``), routing while it holds the routing lease, its doorbell, and
adoption (woken by ``announce`` or every ``adopt_every_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import redis
import redis.asyncio as aredis

from parley import metrics
from parley.connections import connect, connect_async
from parley.leases import LeaseLost
from parley.orgs import DEFAULT_ORG
from parley.settings import Settings
from parley.state_cache import StateCache
from workers.guest import budget as connect_budget
from workers.guest import keys as guest_keys
from workers.guest.batch import RedisBatcher, pack_with_hiredis
from workers.guest.commands import CommandDesk
from workers.guest.network import OrgSessionIO, SessionIO, websocket_connector
from workers.guest.ownership import Ownership, new_worker_id
from workers.guest.routing import Router
from workers.guest.session import RunnerContext, SessionRunner, settle_leftovers
from workers.guest.settings import GuestSettings
from workers.guest.store import SessionStatus, SessionStore

log = logging.getLogger("parley.guest")

HANDOVER_TIMEOUT_S = 10.0
LEASE_STOP_TIMEOUT_S = 5.0
REDIS_CONNECTIONS = 64
REDIS_RETRY_S = 1.0
TRIM_EVERY_S = 60.0  # the router drops routed entries past PARLEY_COMMANDS_KEEP_S this often


class GuestWorker:
    def __init__(self, settings: Settings, guest_settings: GuestSettings | None = None, *,
                 io: SessionIO | None = None, worker_id: str | None = None) -> None:
        self.settings = settings
        self.guest_settings = guest_settings or GuestSettings()
        self.worker_id = worker_id or new_worker_id()
        self.runners: dict[str, SessionRunner] = {}
        self.stopping = asyncio.Event()
        self.lease_lost = False
        self._io = io
        self._routing = asyncio.Event()
        # The lease outlives `stopping` (it is renewed while sessions are handed over) and ends on its
        # own event: cancelling a task inside a redis-py call can be swallowed, so cancel alone is not
        # a reliable way to stop a loop.
        self._lease_done = asyncio.Event()

    # --- lifecycle ----------------------------------------------------------------------------------

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        """Serve until :meth:`request_stop` (or a lost lease); then hand the sessions over."""
        gs = self.guest_settings
        # Thousands of runners share a bounded pool and wait for a connection rather than fail.
        self.redis = connect_async(self.settings, max_connections=REDIS_CONNECTIONS)
        pack_with_hiredis(self.redis.connection_pool)
        sync_redis: redis.Redis = connect(self.settings)
        # The lease's own connection: a renewal must never queue behind session work (see ownership).
        lease_redis = connect_async(self.settings, max_connections=1)
        executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="guest-state-cache")
        org_io = OrgSessionIO(self.settings, self.redis, websocket_connector(gs))
        io = self._io or org_io(DEFAULT_ORG)
        batcher = RedisBatcher(self.redis, gs.batch_window_s)
        self.store = SessionStore(batcher, self.settings)
        self.budget = connect_budget.ConnectionBudget(batcher.script(connect_budget.TAKE), gs.connect_per_minute,
                                                      gs.connect_burst)
        self.desk = CommandDesk(batcher, self.settings, executor)
        self.ownership = Ownership(self.redis, self.worker_id, gs.lease_ttl_ms, lease_client=lease_redis)
        self.router = Router(self.redis, self.store, self.desk, self.ownership, gs, self.ensure_runner)
        self.context = RunnerContext(self.worker_id, self.store, self.desk, io, gs, StateCache(sync_redis),
                                     org_io=None if self._io else org_io, budget=self.budget)
        for step in (batcher.load_scripts, self.ownership.register, self.router.ensure_group):
            await self._when_redis_answers(step)
        loops = [asyncio.create_task(coro, name=name) for name, coro in (
            ("guest-lease", self._lease_loop()),
            ("guest-router", self._guarded(self._router_loop)),
            ("guest-doorbell", self._guarded(self._doorbell_loop)),
            ("guest-adopt", self._guarded(self._adopt_loop)),
        )]
        log.info("guest worker %s up", self.worker_id)
        if ready:
            ready()
        try:
            await self.stopping.wait()
        finally:
            lease_task, others = loops[0], loops[1:]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            if not self.lease_lost:
                await self._hand_over()  # the lease keeps being renewed until everything is closed
            self._lease_done.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(lease_task, return_exceptions=True), LEASE_STOP_TIMEOUT_S)
            if not self.lease_lost:
                await self.ownership.release()
            await self.budget.aclose()
            await org_io.aclose()
            await batcher.aclose()
            await self.redis.aclose()
            await lease_redis.aclose()
            sync_redis.close()
            executor.shutdown(wait=False)
            log.info("guest worker %s stopped", self.worker_id)

    def request_stop(self) -> None:
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)

    async def _hand_over(self) -> None:
        runners = list(self.runners.values())
        for runner in runners:
            runner.stop(handover=True)
        tasks = [r.task for r in runners if r.task is not None]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=HANDOVER_TIMEOUT_S)
            for task in pending:
                task.cancel()
        log.info("handed %d session(s) over", len(runners))

    # --- sessions -----------------------------------------------------------------------------------

    def ensure_runner(self, ident: str) -> None:
        """Start the session's runner here (it checks that this worker owns it), or poke the live one."""
        if self.stopping.is_set():
            return
        runner = self.runners.get(ident)
        if runner is not None:
            runner.poke()
            return
        runner = SessionRunner(ident, self.context, self._runner_exited)
        self.runners[ident] = runner
        metrics.guest_sessions.set(len(self.runners))
        runner.launch()

    def _runner_exited(self, ident: str) -> None:
        runner = self.runners.pop(ident, None)
        metrics.guest_sessions.set(len(self.runners))
        if runner is not None and runner.failed and not self.stopping.is_set():
            # Redis was unavailable (or a bug): try again shortly; the runner reloads everything it needs.
            asyncio.get_running_loop().call_later(REDIS_RETRY_S, self.ensure_runner, ident)

    # --- loops --------------------------------------------------------------------------------------

    async def _guarded(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run ``loop`` until stopping, riding out Redis outages (and bugs: a loop that died quietly
        would leave commands unrouted or doorbells unheard while the worker looked healthy)."""
        while not self.stopping.is_set():
            try:
                await loop()
            except (aredis.ConnectionError, aredis.TimeoutError, aredis.BusyLoadingError):
                log.warning("Redis unavailable; retrying")
            except Exception:
                log.exception("%s failed; starting it again", getattr(loop, "__name__", "a worker loop"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), REDIS_RETRY_S)

    async def _when_redis_answers(self, step: Callable[[], Awaitable[object]]) -> None:
        """Run a start-up step, waiting for Redis while it is down or still loading its data (a worker
        started, or restarted by its supervisor, during a Redis restart must not exit for that)."""
        while True:
            try:
                await step()
                return
            except (aredis.ConnectionError, aredis.TimeoutError) as exc:  # BusyLoadingError included
                log.warning("Redis not ready (%s); starting when it is", type(exc).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), REDIS_RETRY_S)
                if self.stopping.is_set():
                    raise

    async def _lease_loop(self) -> None:
        while not self._lease_done.is_set():
            try:
                if await self.ownership.renew(may_route=not self.stopping.is_set()):
                    self._routing.set()
                else:
                    self._routing.clear()
            except LeaseLost:
                # Declared dead (stalled past the TTL): its sessions may be adopted already. Stop touching
                # them (writes are fenced anyway) and exit, so a supervisor starts a fresh worker.
                log.error("guest worker %s lost its lease; stopping without handover", self.worker_id)
                self.lease_lost = True
                for runner in list(self.runners.values()):
                    runner.stop(handover=False)
                self.stopping.set()
                return
            except (aredis.ConnectionError, aredis.TimeoutError, aredis.BusyLoadingError):
                log.warning("Redis unavailable; lease not renewed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lease_done.wait(), self.guest_settings.renew_every_s)

    async def _router_loop(self) -> None:
        while not self.stopping.is_set():
            await self._routing.wait()
            claimed = await self.router.take_over()
            log.info("routing guest commands (claimed %d pending)", claimed)
            trimmed_at = time.monotonic()
            while self._routing.is_set() and not self.stopping.is_set():
                await self.router.run_once()
                if time.monotonic() - trimmed_at >= TRIM_EVERY_S:
                    trimmed_at = time.monotonic()
                    await self.router.trim(self.settings.commands_keep_s)

    async def _doorbell_loop(self) -> None:
        last = "0"
        doorbell = guest_keys.doorbell(self.worker_id)
        while not self.stopping.is_set():
            reply = await self.redis.xread({doorbell: last}, count=1000, block=1000)
            for _stream, rows in reply or []:
                for entry_id, fields in rows:
                    last = entry_id
                    await self._ring(fields.get("session", ""))

    async def _ring(self, ident: str) -> None:
        if not ident:
            return
        if ident in self.runners:
            self.runners[ident].poke()
            return
        record = await self.store.load(ident)
        if record is None or record.owner != self.worker_id:
            return  # a stale doorbell: the session moved on
        if record.status is SessionStatus.ended:
            # Commands routed while it was ending: answer them without a runner.
            await settle_leftovers(self.store, self.desk, ident, record.token, "the guest session has ended")
            return
        self.ensure_runner(ident)

    async def _adopt_loop(self) -> None:
        announce = guest_keys.ANNOUNCE
        newest = await self.redis.xrevrange(announce, count=1)
        last = newest[0][0] if newest else "0-0"
        while not self.stopping.is_set():
            await self.adopt()
            reply = await self.redis.xread({announce: last}, count=100,
                                           block=int(self.guest_settings.adopt_every_s * 1000))
            for _stream, rows in reply or []:
                last = rows[-1][0]

    async def adopt(self) -> int:
        """Take over the sessions of workers whose lease is gone, batch by batch, up to capacity."""
        adopted = 0
        gs = self.guest_settings
        for dead in await self.ownership.dead_workers():
            while not self.stopping.is_set() and len(self.runners) < gs.max_sessions:
                idents = await self.ownership.adopt_from(dead, gs.adopt_batch)
                if not idents:
                    break
                log.info("adopting %d session(s) of worker %s", len(idents), dead)
                for ident in idents:
                    self.ensure_runner(ident)
                adopted += len(idents)
                metrics.guest_adoptions.inc(len(idents))
        return adopted


def _tune_gc() -> None:
    """Thousands of long-lived session objects make full collections slow and pointless: keep what exists
    at start-up out of them (freeze) and make full collections rare. A young collection stops the whole
    worker for time proportional to the young generation (measured at ten thousand sessions: about 2 us
    per object, so some 40 ms at a threshold of 20,000 and 150 ms at its worst): a modest threshold makes
    the pauses short, which is what relay latency at the 99th percentile sees, for somewhat more work in
    all (measured: about 9 % of a core instead of 6 %)."""
    gc.freeze()
    gc.set_threshold(5_000, 10, 50)


def use_fast_event_loop() -> bool:
    """uvloop where installed (it comes with uvicorn[standard]): its C event loop and transports cost
    the relay path less per frame and per timer than asyncio's; True when it is in use."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def main(settings: Settings, guest_settings: GuestSettings | None = None) -> int:
    """Run one guest worker until SIGTERM/SIGINT; the process exit status (1 when the lease was lost)."""
    use_fast_event_loop()

    async def serve() -> int:
        worker = GuestWorker(settings, guest_settings)
        worker.install_signal_handlers()
        await worker.run(ready=_tune_gc)
        return 1 if worker.lease_lost else 0

    return asyncio.run(serve())
