from pathlib import Path

import pytest
import redis

from parley.app.redis_server import RedisServer


def test_real_redis_server_persists_across_restart(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        client.close()
        server.restart()
        client = redis.Redis.from_url(server.url)
        assert client.get("k") == b"v"
        assert client.config_get("appendonly")["appendonly"] == "yes"
        client.close()


def test_a_relative_data_dir_works_as_parley_runs_default_does(tmp_path: Path, monkeypatch) -> None:
    """``parley run`` keeps its data in ``.parley`` (relative); redis-server changes into --dir before it
    opens --logfile, so both must reach it absolute."""
    monkeypatch.chdir(tmp_path)
    with RedisServer(Path(".parley") / "redis") as server:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()
    assert (tmp_path / ".parley" / "redis" / "redis.log").exists()


def test_a_port_already_served_by_another_redis_is_a_clear_error(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "first") as first:
        second = RedisServer(tmp_path / "second", port=first.port)
        with pytest.raises(RuntimeError, match=f"port {first.port} is already served by another Redis"):
            second.start()
        assert second.process is not None and second.process.poll() is not None
        assert redis.Redis.from_url(first.url).ping()  # the first one is untouched
