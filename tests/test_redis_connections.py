"""Production Redis for every connection (issue 15.4): ACL users, TLS, Sentinel settings, secrets kept out of
what is printed. Real servers on loopback: ACL users on the wheel's redis-server; TLS through a loopback TLS
terminator in front of it (the wheel's build has no TLS: tests/support/tls.py); the Sentinel failover with
the whole pipeline is in test_redis_sentinel_integration.py."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.sentinel
import uvloop
from kombu import Connection
from typer.testing import CliRunner

from parley.app.cli import app as cli_app
from parley.app.redis_server import RedisServer, redis_server_binary
from parley.connections import (
    AsyncSentinelConnection,
    RedisNotConfigured,
    RedisSettingsError,
    SentinelConnection,
    connect,
    connect_async,
    describe,
    redact,
    target,
)
from parley.settings import Settings, get_settings
from parley.startup import settings_errors_exit
from tasks.app import make_config
from tasks.transport import SENTINEL_TRANSPORT, TRANSPORT, SentinelChannel, celery_broker
from tests.support.tls import Certificates, have_openssl, make_certificates, tls_proxy
from workers.guest.batch import RedisBatcher, pack_with_hiredis

PASSWORD = "s3cret/With@Odd:chars"
QUOTED = "s3cret%2FWith%40Odd%3Achars"  # the same, as a URL carries it
ACL = (
    "user default off",
    f"user parley on >{PASSWORD} ~* &* +@all",
    "user reader on >reader-pw ~* -@all +get +ping +hello +auth",
)


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# --- settings read as a target (no server) -----------------------------------------------------------------


def test_a_plain_url_is_one_server_with_its_login_and_db() -> None:
    t = target(settings(redis_url=f"redis://parley:{QUOTED}@redis.internal:6380/3"))
    assert (t.scheme, t.username, t.password, t.db, t.uses_sentinel, t.tls) == (
        "redis", "parley", PASSWORD, 3, False, {})


def test_sentinel_settings_name_the_master_and_the_sentinels() -> None:
    t = target(settings(redis_url=f"rediss://parley:{QUOTED}@mymaster/2", redis_sentinels="10.0.0.1:26379, s2",
                        redis_sentinel_master="mymaster", redis_sentinel_password="sp"))
    assert t.sentinels == (("10.0.0.1", 26379), ("s2", 26379))
    assert (t.master, t.username, t.password, t.db, t.sentinel_password, t.uses_tls) == (
        "mymaster", "parley", PASSWORD, 2, "sp", True)
    alone = target(settings(redis_sentinels="s1:1,s2:2", redis_sentinel_master="mymaster"))  # no URL: db 0, no login
    assert (alone.username, alone.password, alone.db, alone.uses_tls) == (None, None, 0, False)


@pytest.mark.parametrize(("values", "says"), [
    ({"redis_sentinels": "s1:26379"}, "PARLEY_REDIS_SENTINEL_MASTER is not"),
    ({"redis_url": "redis://h/0", "redis_sentinel_master": "m"}, "PARLEY_REDIS_SENTINELS is not"),
    ({"redis_url": "redis://u:p@old-host:6379/0", "redis_sentinels": "s1", "redis_sentinel_master": "m"},
     "names a host other than PARLEY_REDIS_SENTINEL_MASTER"),
    ({"redis_url": "http://h"}, "must start with redis://, rediss:// or unix://"),
    ({"redis_url": "redis://h", "redis_tls_ca_file": "/ca.pem"}, "PARLEY_REDIS_TLS_CA_FILE is set but"),
    ({"redis_url": "rediss://h", "redis_tls_cert_file": "/c.pem"}, "go together"),
])
def test_redis_settings_that_cannot_work_together_are_one_clear_sentence(values: dict, says: str,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RedisSettingsError, match=says):
        target(settings(**values))
    with pytest.raises(SystemExit) as exit_info, settings_errors_exit():  # what an entry point prints
        make_config(settings(**values))
    assert exit_info.value.code == 2 and says in capsys.readouterr().err


def test_a_malformed_sentinel_list_is_refused_naming_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit), settings_errors_exit():
        settings(redis_sentinels="s1:notaport")
    assert "PARLEY_REDIS_SENTINELS is not valid: must be host:port,host:port" in capsys.readouterr().err
    assert settings(redis_sentinels="").redis_sentinels is None  # compose's ${VAR:-}


def test_no_redis_at_all_says_how_to_get_one() -> None:
    with pytest.raises(RedisNotConfigured, match="PARLEY_REDIS_URL is not set"):
        target(settings())
    assert make_config(settings())["broker_url"] is None  # importing the Celery app still works


def test_tls_verify_modes_become_redis_py_arguments() -> None:
    full = target(settings(redis_url="rediss://h:6380/0", redis_tls_ca_file="/ca.pem",
                           redis_tls_cert_file="/c.pem", redis_tls_key_file="/c.key")).tls
    assert full == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True, "ssl_ca_certs": "/ca.pem",
                    "ssl_certfile": "/c.pem", "ssl_keyfile": "/c.key"}
    ca = target(settings(redis_url="rediss://h", redis_tls_verify="ca")).tls
    assert (ca["ssl_cert_reqs"], ca["ssl_check_hostname"]) == (ssl.CERT_REQUIRED, False)
    none = target(settings(redis_url="rediss://h", redis_tls_verify="none")).tls
    assert (none["ssl_cert_reqs"], none["ssl_check_hostname"]) == (ssl.CERT_NONE, False)


def test_the_celery_broker_through_sentinel_keeps_the_reliability_options() -> None:
    config = make_config(settings(redis_url=f"rediss://parley:{QUOTED}@mymaster/1", redis_sentinels="s1:1,s2:2",
                                  redis_sentinel_master="mymaster", redis_sentinel_password="sp",
                                  redis_tls_ca_file="/ca.pem", visibility_timeout_s=900))
    # Every URL carries the master's login: kombu moves on to the next one after a connection error.
    assert config["broker_url"] == f"sentinel://parley:{QUOTED}@s1:1/1;sentinel://parley:{QUOTED}@s2:2/1"
    assert config["broker_transport"] == SENTINEL_TRANSPORT
    assert config["broker_use_ssl"]["ssl_ca_certs"] == "/ca.pem"
    options = config["broker_transport_options"]
    assert options is config["result_backend_transport_options"]
    assert options["visibility_timeout"] == config["visibility_timeout"] == 900
    assert options["master_name"] == "mymaster" and options["sentinel_kwargs"]["password"] == "sp"
    assert options["sentinel_kwargs"]["ssl"] is True  # TLS to the Sentinels too
    plain = celery_broker(settings(redis_url="redis://h:1/0"))
    assert (plain["broker_transport"], plain["transport_options"], "broker_use_ssl" in plain) == (TRANSPORT, {}, False)


def test_no_password_is_ever_printed() -> None:
    url = f"redis://parley:{QUOTED}@redis.internal:6380/0"
    assert redact(url) == "redis://parley:***@redis.internal:6380/0"
    assert redact("redis://:pw@h/0") == "redis://:***@h/0" and redact("redis://h/0") == "redis://h/0"
    assert describe(settings(redis_url=url)) == "redis://parley:***@redis.internal:6380/0 (as parley with a password)"
    sentinel = describe(settings(redis_url=f"redis://parley:{QUOTED}@mymaster/0", redis_sentinels="s1:1",
                                 redis_sentinel_master="mymaster", redis_sentinel_password="sentinel-pw"))
    assert "sentinel-pw" not in sentinel and QUOTED not in sentinel and PASSWORD not in sentinel
    assert sentinel == "Sentinel master mymaster (sentinels s1:1), db 0 as parley with a password"


def test_celery_censors_the_broker_passwords_in_what_workers_report() -> None:
    """What `celery inspect conf` and Flower's worker Config tab show is Celery's censored table."""
    from celery import Celery

    celery_app = Celery("t")
    celery_app.conf.update(make_config(settings(redis_url=f"redis://parley:{QUOTED}@mymaster/0",
                                                redis_sentinels="s1:1", redis_sentinel_master="mymaster",
                                                redis_sentinel_password="sentinel-pw")))
    shown = repr(celery_app.conf.table(censored=True))
    assert QUOTED not in shown and "sentinel-pw" not in shown and "mymaster" in shown


# --- ACL users, for real -------------------------------------------------------------------------------------


def through_the_guest_workers_mux(s: Settings, commands: list[tuple[Any, ...]]) -> list[Any]:
    """``commands`` on the guest worker's kind of connection: its pool's class, multiplexed, hiredis-packed,
    on the worker's event loop (uvloop, whose TLS transport the multiplexed connection takes over)."""

    async def run() -> list[Any]:
        pooled = connect_async(s, max_connections=2)
        pack_with_hiredis(pooled.connection_pool)
        batcher = RedisBatcher(pooled)
        try:
            return await batcher.run(lambda staged: staged.extend(commands))
        finally:
            await batcher.aclose()
            await pooled.aclose()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run())


def through_the_celery_broker(s: Settings) -> Any:
    """One message through the broker as the Celery app configures it (URL, transport, TLS, options)."""
    config = make_config(s)
    with Connection(config["broker_url"], transport=config["broker_transport"], ssl=config.get("broker_use_ssl"),
                    transport_options=config["broker_transport_options"]) as broker:
        queue = broker.SimpleQueue("parley.test.broker")
        queue.put({"n": 1})
        message = queue.get(timeout=5)
        message.ack()
        queue.close()
        return message.payload


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("acl"), config=ACL, auth=("parley", PASSWORD)) as server:
        yield server


def acl_url(server: RedisServer, user: str = "parley", password: str = QUOTED) -> str:
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


def test_an_acl_user_logs_in_for_every_kind_of_connection(acl_server: RedisServer) -> None:
    s = settings(redis_url=acl_url(acl_server))
    client = connect(s)
    assert client.set("acl:sync", "1") and client.acl_whoami() == "parley"

    assert through_the_guest_workers_mux(s, [("SET", "acl:mux", "2"), ("ACL", "WHOAMI")]) == ["OK", "parley"]
    assert through_the_celery_broker(s) == {"n": 1}
    client.close()


def test_a_wrong_password_and_a_denied_command_are_clear_errors(acl_server: RedisServer) -> None:
    with pytest.raises(redis.AuthenticationError, match="invalid username-password pair"):
        connect(settings(redis_url=acl_url(acl_server, password="wrong"))).ping()
    reader = connect(settings(redis_url=acl_url(acl_server, "reader", "reader-pw")))
    assert reader.ping()
    with pytest.raises(redis.exceptions.NoPermissionError, match="no permissions to run the 'xadd' command"):
        reader.xadd("parley:commands", {"command": "{}"})
    reader.close()


def test_the_cli_says_the_login_was_refused_without_printing_the_password(
        acl_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_REDIS_URL", acl_url(acl_server, password="wrong-Pw-42"))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli_app, ["events", "--since", "0", "--no-follow"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "refused the login" in result.output and "invalid username-password pair" in result.output
    assert "wrong-Pw-42" not in result.output and "redis://parley:***@" in result.output


# --- a master a failover left behind: the connection is dropped, not the command failed ---------------------


class _NamesThisMaster:
    """A Sentinel stand-in naming one fixed address as the master: the state of a client whose master was
    demoted (or left without its replica) while it was connected."""

    def __init__(self, port: int) -> None:
        self.address = ("127.0.0.1", port)

    def discover_master(self, service_name: str) -> tuple[str, int]:
        return self.address


class _NamesThisMasterAsync(_NamesThisMaster):
    async def discover_master(self, service_name: str) -> tuple[str, int]:  # type: ignore[override]
        return self.address


@pytest.fixture(scope="module")
def refusing_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RedisServer]]:
    """Real refusals: a demoted master (a replica of nobody: READONLY) and a master without the replica
    ``min-replicas-to-write`` asks for (NOREPLICAS)."""
    root = tmp_path_factory.mktemp("refusing")
    with RedisServer(root / "demoted", config=("replicaof 127.0.0.1 1",)) as demoted_master, \
            RedisServer(root / "orphaned", config=("min-replicas-to-write 1",)) as orphaned_master:
        yield {"READONLY": demoted_master, "NOREPLICAS": orphaned_master}


@pytest.mark.parametrize("refusal", ["READONLY", "NOREPLICAS"])
def test_a_refusing_master_drops_the_connection_as_a_connection_error(
        refusing_servers: dict[str, RedisServer], refusal: str) -> None:
    server = refusing_servers[refusal]
    pool = redis.sentinel.SentinelConnectionPool("mymaster", _NamesThisMaster(server.port),
                                                 connection_class=SentinelConnection)
    client = redis.Redis(connection_pool=pool, retry=None)
    assert client.get("k") is None  # reads are fine
    # A plain reply (redis-py itself already turns a plain READONLY into "The previous master is now a slave")...
    with pytest.raises(redis.ConnectionError, match=f"{refusal}|previous master is now a slave"):
        client.set("k", "v")
    # ... and the same refusal inside a Lua script, which redis-py passes on as a plain ResponseError.
    with pytest.raises(redis.ConnectionError, match=f"refused a write .*{refusal}.*reconnecting through Sentinel"):
        client.eval("redis.call('get', 'k') return redis.call('set', 'k', 'v')", 0)
    client.close()


@pytest.mark.parametrize("refusal", ["READONLY", "NOREPLICAS"])
def test_the_guest_workers_mux_drops_a_refusing_master_and_reopens(
        refusing_servers: dict[str, RedisServer], refusal: str) -> None:
    import redis.asyncio.sentinel as asentinel

    server = refusing_servers[refusal]

    async def scenario() -> list[Any]:
        pool = asentinel.SentinelConnectionPool("mymaster", _NamesThisMasterAsync(server.port),
                                                connection_class=AsyncSentinelConnection, decode_responses=True)
        batcher = RedisBatcher(redis.asyncio.Redis(connection_pool=pool))
        try:
            with pytest.raises(redis.ConnectionError, match=refusal):
                await batcher.run(lambda c: c.append(("EVAL", "return redis.call('set', 'k', 'v')", 0)))
            return await batcher.run(lambda c: c.append(("GET", "k")))  # a new connection, asked for again
        finally:
            await batcher.aclose()

    assert asyncio.run(scenario()) == [None]


def test_the_sentinel_channel_uses_parleys_connections() -> None:
    from parley.connections import SentinelSSLConnection

    assert SentinelChannel.connection_class is SentinelConnection
    assert SentinelChannel.connection_class_ssl is SentinelSSLConnection


# --- TLS: the wheel's redis-server has none; a loopback TLS terminator in front of it ------------------------


def test_the_wheels_redis_server_has_no_tls(tmp_path: Path) -> None:
    """Why TLS is tested through a proxy: if this fails, the wheel gained TLS and the tests can use it."""
    import subprocess

    done = subprocess.run([redis_server_binary(), "--port", "0", "--tls-port", "0"], capture_output=True,
                          text=True, timeout=10)
    assert done.returncode != 0 and "tls-port" in done.stdout + done.stderr


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    if not have_openssl():
        pytest.skip("no openssl command to make test certificates")
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("behind-tls"), config=ACL, auth=("parley", PASSWORD)) as server:
        yield server


def tls_settings(port: int, certs: Certificates, host: str = "localhost", **values: Any) -> Settings:
    values = {"redis_tls_ca_file": str(certs.ca), "redis_tls_cert_file": str(certs.client_cert),
              "redis_tls_key_file": str(certs.client_key), **values}
    return settings(redis_url=f"rediss://parley:{QUOTED}@{host}:{port}/0", **values)


def test_rediss_with_a_ca_and_a_client_certificate_works_for_every_kind_of_connection(
        plain_server: RedisServer, certs: Certificates) -> None:
    with tls_proxy(certs, plain_server.port, require_client_cert=True) as proxy:
        s = tls_settings(proxy.port, certs)
        client = connect(s)
        assert client.set("tls:sync", "1") and client.acl_whoami() == "parley"
        client.close()

        assert through_the_guest_workers_mux(s, [("SET", "tls:mux", "2"), ("GET", "tls:sync")]) == ["OK", "1"]
        assert through_the_celery_broker(s) == {"n": 1}


def test_tls_verification_refuses_what_it_should(plain_server: RedisServer, certs: Certificates) -> None:
    with tls_proxy(certs, plain_server.port, require_client_cert=True) as proxy:
        wrong_ca = tls_settings(proxy.port, certs, redis_tls_ca_file=str(certs.other_ca))
        with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            connect(wrong_ca).ping()
        by_address = tls_settings(proxy.port, certs, host="127.0.0.1")  # the certificate names localhost only
        with pytest.raises(redis.ConnectionError, match=r"IP address mismatch|hostname"):
            connect(by_address).ping()
        assert connect(tls_settings(proxy.port, certs, host="127.0.0.1", redis_tls_verify="ca")).ping()
        no_client_cert = settings(redis_url=f"rediss://parley:{QUOTED}@localhost:{proxy.port}/0",
                                  redis_tls_ca_file=str(certs.ca))
        with pytest.raises(redis.ConnectionError):
            connect(no_client_cert).ping()
