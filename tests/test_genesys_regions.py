"""Region / host / URL resolution (reference §1)."""

from __future__ import annotations

import pytest

from genesys.regions import REGION_API_HOSTS, Endpoints, api_host, resolve
from parley.settings import Settings


def test_every_reference_region_is_known() -> None:
    assert len(REGION_API_HOSTS) == 18
    assert REGION_API_HOSTS["eu_west_1"] == "api.mypurecloud.ie"
    assert REGION_API_HOSTS["us_east_2"] == "api.use2.us-gov-pure.cloud"
    assert REGION_API_HOSTS["eusc_de_east_1"] == "api.edee1.eusc-pure.cloud"
    assert all(host.startswith("api.") for host in REGION_API_HOSTS.values())


@pytest.mark.parametrize(
    ("given", "host"),
    [
        ("eu_west_1", "api.mypurecloud.ie"),
        ("EU-WEST-1", "api.mypurecloud.ie"),
        ("mypurecloud.ie", "api.mypurecloud.ie"),
        ("usw2.pure.cloud", "api.usw2.pure.cloud"),
        ("api.mypurecloud.com.au", "api.mypurecloud.com.au"),
        ("login.mypurecloud.de", "api.mypurecloud.de"),
        ("https://api.apne2.pure.cloud/", "api.apne2.pure.cloud"),
        (" mypurecloud.com ", "api.mypurecloud.com"),
        ("newregion.pure.cloud", "api.newregion.pure.cloud"),  # unlisted domains are accepted
    ],
)
def test_api_host_accepts_names_domains_hosts_and_urls(given: str, host: str) -> None:
    assert api_host(given) == host


@pytest.mark.parametrize("bad", ["", "  ", "eu_west_9", "ireland"])
def test_unknown_region_names_are_refused_with_the_list(bad: str) -> None:
    with pytest.raises(ValueError, match="region"):
        api_host(bad)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, Endpoints(api_url="http://127.0.0.1:8089", login_url="http://127.0.0.1:8089")),
        (
            {"emulator_host": "localhost", "emulator_port": 9000},
            Endpoints(api_url="http://localhost:9000", login_url="http://localhost:9000"),
        ),
        (
            {"genesys_region": "mypurecloud.ie"},
            Endpoints(api_url="https://api.mypurecloud.ie", login_url="https://login.mypurecloud.ie"),
        ),
        (
            {"genesys_region": "us_west_2"},
            Endpoints(api_url="https://api.usw2.pure.cloud", login_url="https://login.usw2.pure.cloud"),
        ),
        (  # explicit API URL wins over the region; a proxy serves its own login
            {"genesys_region": "eu_west_1", "genesys_api_url": "http://proxy.local:8080/"},
            Endpoints(api_url="http://proxy.local:8080", login_url="http://proxy.local:8080"),
        ),
        (
            {"genesys_api_url": "https://api.mypurecloud.jp"},
            Endpoints(api_url="https://api.mypurecloud.jp", login_url="https://login.mypurecloud.jp"),
        ),
        (
            {"genesys_region": "eu_west_1", "genesys_login_url": "https://sso.example/"},
            Endpoints(api_url="https://api.mypurecloud.ie", login_url="https://sso.example"),
        ),
    ],
)
def test_resolve_from_settings(env: dict[str, object], expected: Endpoints) -> None:
    assert resolve(Settings(**env)) == expected


def test_region_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_GENESYS_REGION", "eu_central_1")
    assert resolve(Settings()).api_url == "https://api.mypurecloud.de"
