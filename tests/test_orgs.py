"""PARLEY_ORGS: inline JSON, JSON and TOML files, secrets from the environment or a file, and what a
bad configuration says at start-up; each org's client (endpoints, credentials, keys, budget)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fakeredis
import pytest
from pydantic import ValidationError

from genesys.client import GenesysClient
from genesys.orgs import target_for
from parley.orgs import UnknownOrg
from parley.settings import Settings
from parley.startup import explain

ROOT = Path(__file__).resolve().parents[1]
ACME = {"region": "mypurecloud.ie", "client_id": "acme-client", "client_secret_env": "ACME_SECRET",
        "rate_limit_per_minute": 120}


@pytest.fixture(autouse=True)
def acme_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_SECRET", "acme-secret-value")
    monkeypatch.delenv("PARLEY_ORGS", raising=False)


def problems(value: object) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Settings(orgs=value)
    return explain(caught.value)


def test_unset_means_only_the_default_org() -> None:
    assert Settings().orgs == {}
    assert Settings(orgs="  ").orgs == {}


def test_inline_json_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_ORGS", json.dumps({"acme": ACME}))
    acme = Settings().orgs["acme"]
    assert acme.secret.get_secret_value() == "acme-secret-value"
    assert acme.rate_limit_per_minute == 120
    assert acme.endpoints().api_url == "https://api.mypurecloud.ie"
    assert acme.endpoints().login_url == "https://login.mypurecloud.ie"
    assert "acme-secret-value" not in repr(acme)


def test_json_file(tmp_path: Path) -> None:
    path = tmp_path / "orgs.json"
    path.write_text(json.dumps({"acme": ACME, "globex": {**ACME, "region": "usw2.pure.cloud"}}))
    orgs = Settings(orgs=str(path)).orgs
    assert sorted(orgs) == ["acme", "globex"]
    assert orgs["globex"].endpoints().api_url == "https://api.usw2.pure.cloud"


def test_toml_file_with_the_secret_in_a_docker_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "acme_secret"
    secret.write_text("from-a-file\n")
    path = tmp_path / "orgs.toml"
    path.write_text(f'[acme]\napi_url = "http://127.0.0.1:8090/"\nclient_id = "acme-client"\n'
                    f'client_secret_file = "{secret}"\n')
    acme = Settings(orgs=str(path)).orgs["acme"]
    assert acme.secret.get_secret_value() == "from-a-file"
    assert acme.endpoints().api_url == acme.endpoints().login_url == "http://127.0.0.1:8090"
    assert acme.rate_limit_per_minute == 300


def test_each_mistake_is_one_sentence_naming_the_org_and_field_never_the_secret(tmp_path: Path) -> None:
    assert problems('{"acme": ') == [
        "PARLEY_ORGS is not valid: inline JSON is not valid JSON at line 1 column 9: Expecting value."]
    assert problems(str(tmp_path / "missing.json")) == [
        f"PARLEY_ORGS is not valid: is neither inline JSON nor a readable file: {tmp_path / 'missing.json'} "
        "(No such file or directory)."]
    (tmp_path / "bad.toml").write_text("[acme\n")
    assert problems(str(tmp_path / "bad.toml"))[0].startswith(f"PARLEY_ORGS is not valid: {tmp_path / 'bad.toml'} "
                                                             "is not valid TOML")
    assert problems({"acme": {**ACME, "client_secret_env": "NOT_SET_ANYWHERE"}}) == [
        "PARLEY_ORGS is not valid: org 'acme': client_secret_env: the environment variable NOT_SET_ANYWHERE is "
        "unset or empty."]
    assert problems({"acme": {**ACME, "client_secret": "inline-secret"}}) == [
        "PARLEY_ORGS is not valid: org 'acme': needs exactly one of client_secret, client_secret_env, "
        "client_secret_file."]
    assert problems({"acme": {"client_id": "c", "client_secret": "inline-secret"}}) == [
        "PARLEY_ORGS is not valid: org 'acme': needs region or api_url."]
    assert problems({"acme": {**ACME, "region": "atlantis"}})[0].startswith(
        "PARLEY_ORGS is not valid: org 'acme': unknown Genesys region 'atlantis'")
    assert problems({"acme": {**ACME, "rate_limit_per_minute": 0}}) == [
        "PARLEY_ORGS is not valid: org 'acme': rate_limit_per_minute: Input should be greater than or equal to 1."]
    assert problems({"acme": {**ACME, "secret": "inline-secret"}}) == [
        "PARLEY_ORGS is not valid: org 'acme': secret: Extra inputs are not permitted."]
    assert problems({"default": ACME}) == [
        "PARLEY_ORGS is not valid: the org 'default' is the PARLEY_GENESYS_* settings; give the others other "
        "aliases."]
    assert problems({"a b": ACME}) == [
        "PARLEY_ORGS is not valid: org alias 'a b' must be 1-64 letters, digits, '_', '.' or '-'."]
    assert problems("[1, 2]") == [
        "PARLEY_ORGS is not valid: must map org aliases to orgs (a JSON object or TOML tables)."]


def test_a_bad_orgs_setting_stops_an_entry_point_with_exit_code_2() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
           "PARLEY_ORGS": json.dumps({"acme": {**ACME, "client_secret_env": "NOT_SET_ANYWHERE"}})}
    done = subprocess.run([sys.executable, "-m", "parley.app.cli", "status"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "PARLEY_ORGS is not valid: org 'acme': client_secret_env" in done.stderr


def test_each_org_gets_its_own_endpoints_credentials_budget_and_redis_keys() -> None:
    settings = Settings(genesys_api_url="http://127.0.0.1:8089", genesys_client_id="default-client",
                        genesys_client_secret="default-secret", orgs={"acme": ACME})
    default, acme = target_for(settings), target_for(settings, "acme")
    assert default.endpoints.api_url == "http://127.0.0.1:8089" and default.rate_limit_per_minute == 300
    assert default.credentials is not None and default.credentials.client_id == "default-client"
    assert acme.endpoints.api_url == "https://api.mypurecloud.ie" and acme.rate_limit_per_minute == 120
    assert acme.credentials is not None and acme.credentials.client_secret.get_secret_value() == "acme-secret-value"
    redis = fakeredis.FakeRedis()
    clients = [GenesysClient(settings, redis, org=org) for org in ("default", "acme")]
    limiters = [c._pipeline.limiter for c in clients]
    assert limiters[0] is not None and limiters[1] is not None
    assert limiters[0].rate_key != limiters[1].rate_key and limiters[0].pause_key != limiters[1].pause_key
    assert limiters[1].limit_per_minute == 120
    assert "org='acme'" in repr(clients[1])
    with pytest.raises(UnknownOrg, match="unknown org 'apac'; known orgs: default, acme"):
        target_for(settings, "apac")
