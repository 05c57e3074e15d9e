"""Where the API and the OAuth endpoint live, from settings.

Precedence: an explicit ``genesys_api_url`` (a proxy, the emulator) wins over ``genesys_region``;
``genesys_login_url`` overrides the derived login URL; nothing configured means the local emulator,
which serves both the API and ``/oauth/token``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # parley.settings loads parley.orgs, which resolves regions with this module
    from parley.settings import Settings

# SDK 269 ``purecloud_region_hosts.py``: region name -> API host.
REGION_API_HOSTS: dict[str, str] = {
    "us_east_1": "api.mypurecloud.com",
    "eu_west_1": "api.mypurecloud.ie",
    "ap_southeast_2": "api.mypurecloud.com.au",
    "ap_northeast_1": "api.mypurecloud.jp",
    "eu_central_1": "api.mypurecloud.de",
    "us_west_2": "api.usw2.pure.cloud",
    "ca_central_1": "api.cac1.pure.cloud",
    "ap_northeast_2": "api.apne2.pure.cloud",
    "eu_west_2": "api.euw2.pure.cloud",
    "ap_south_1": "api.aps1.pure.cloud",
    "us_east_2": "api.use2.us-gov-pure.cloud",
    "sa_east_1": "api.sae1.pure.cloud",
    "me_central_1": "api.mec1.pure.cloud",
    "ap_northeast_3": "api.apne3.pure.cloud",
    "eu_central_2": "api.euc2.pure.cloud",
    "mx_central_1": "api.mxc1.pure.cloud",
    "ap_southeast_1": "api.apse1.pure.cloud",
    "eusc_de_east_1": "api.edee1.eusc-pure.cloud",
}


# The emulator's seeded OAuth client: with no Genesys configured, Parley talks to the local emulator
# (:func:`resolve`) as this client (``make run``'s documented default). The emulator seeds its default
# org with it (:mod:`emulator.fixtures`), so the one pair lives here, below both.
EMULATOR_CLIENT_ID = "7c3f9a52-1e4b-4d8a-b6f2-93d0c5e8a417"
EMULATOR_CLIENT_SECRET = "Zq8vR2mW5tY1kP9sX3nB7cL0dF4hJ6gA2eU8iO5rT1w"  # a public fixture, not a secret


class Endpoints(BaseModel):
    """Base URLs without a trailing slash, e.g. ``https://api.mypurecloud.ie``."""

    model_config = ConfigDict(frozen=True)

    api_url: str
    login_url: str


def api_host(region: str) -> str:
    """The API host for a region name (``eu_west_1``/``eu-west-1``), a domain (``mypurecloud.ie``),
    an API or login host (``api.mypurecloud.ie``) or a URL (``https://api.mypurecloud.ie/``)."""
    value = region.strip().lower()
    if not value:
        raise ValueError("empty Genesys region")
    if "://" in value:
        value = urlsplit(value).hostname or ""
    value = value.rstrip("/")
    named = REGION_API_HOSTS.get(value.replace("-", "_"))
    if named:
        return named
    if "." not in value:
        known = ", ".join(sorted(REGION_API_HOSTS))
        raise ValueError(f"unknown Genesys region {region!r}; use a domain or one of: {known}")
    if value.startswith("login."):
        value = value.removeprefix("login.")
    # A domain or host: Genesys adds regions over time, so an unlisted domain is accepted as is.
    return value if value.startswith("api.") else f"api.{value}"


def login_url_for(api_url: str) -> str:
    """The SDK's rule: ``//api.`` becomes ``//login.``; other hosts (emulator, proxy) serve both."""
    return api_url.replace("//api.", "//login.", 1)


def resolve(settings: Settings) -> Endpoints:
    if settings.genesys_api_url:
        api_url = settings.genesys_api_url.rstrip("/")
    elif settings.genesys_region:
        api_url = f"https://{api_host(settings.genesys_region)}"
    else:
        api_url = f"http://{settings.emulator_host}:{settings.emulator_port}"
    login_url = (settings.genesys_login_url or login_url_for(api_url)).rstrip("/")
    return Endpoints(api_url=api_url, login_url=login_url)
