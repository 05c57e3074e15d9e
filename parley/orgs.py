"""Several Genesys orgs by alias (``PARLEY_ORGS``): what each one is and where its secret comes from.

A command's ``org`` picks the Genesys org its calls go to. ``default`` is the org of the plain
``PARLEY_GENESYS_*`` settings (the emulator's seeded org when none is set); ``PARLEY_ORGS`` adds
others: a JSON or TOML file, or inline JSON, mapping alias -> :class:`Org`::

    {"acme": {"region": "mypurecloud.ie", "client_id": "...", "client_secret_file": "/run/secrets/acme",
              "rate_limit_per_minute": 300}}

The secret itself is never in the mapping's text when it need not be: ``client_secret_env`` names an
environment variable, ``client_secret_file`` a file (Docker secrets); an inline ``client_secret`` is
accepted for a file only its service can read. It is read once, at start-up, into a ``SecretStr``.

Everything wrong (a missing file, bad JSON, an unknown field, no secret, an unknown region) is a
``ValueError`` whose message names the org and the field, never a value: the settings validator turns
it into ``PARLEY_ORGS is not valid: ...`` and exit code 2 (:mod:`parley.startup`).

Each org has its own OAuth client, so its own token and request budget in Redis (:mod:`genesys.keys`
scopes both by login URL and client id); the state cache's natural keys carry the org.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from genesys.regions import Endpoints, api_host, login_url_for
from schemas.commands import Command
from schemas.common import OrgAlias
from schemas.events import FieldError
from schemas.validation import Rejection

DEFAULT_ORG = "default"
"""The org of the plain ``PARLEY_GENESYS_*`` settings, and of a command without ``org``."""


class Org(BaseModel):
    """One Genesys org besides ``default``: where it is, its OAuth client, its request budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str | None = Field(default=None, description="Region or domain (eu_west_1, mypurecloud.ie).")
    api_url: str | None = Field(default=None, description="Explicit API base URL (wins over region).")
    login_url: str | None = Field(default=None, description="Explicit OAuth base URL.")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = Field(default=None, description="Inline; prefer the _env or _file form.")
    client_secret_env: str | None = Field(default=None, description="Environment variable holding the secret.")
    client_secret_file: Path | None = Field(default=None, description="File holding the secret (Docker secrets).")
    rate_limit_per_minute: int = Field(default=300, ge=1, description="Requests per minute of its OAuth client.")
    _secret: SecretStr = PrivateAttr()  # the secret, from whichever source names it

    @model_validator(mode="after")
    def _where_and_secret(self) -> Org:
        if not (self.region or self.api_url):
            raise ValueError("needs region or api_url")
        if self.region and not self.api_url:
            api_host(self.region)  # an unknown region name fails here, at start-up
        sources = [n for n in ("client_secret", "client_secret_env", "client_secret_file") if getattr(self, n)]
        if len(sources) != 1:
            raise ValueError("needs exactly one of client_secret, client_secret_env, client_secret_file")
        self._secret = self.client_secret or SecretStr(self._read_secret())
        return self

    def _read_secret(self) -> str:
        if self.client_secret_env:
            value = os.environ.get(self.client_secret_env, "").strip()
            if not value:
                raise ValueError(f"client_secret_env: the environment variable {self.client_secret_env} is unset "
                                 "or empty")
            return value
        assert self.client_secret_file is not None
        try:
            value = self.client_secret_file.read_text().strip()
        except OSError as exc:
            raise ValueError(f"client_secret_file: cannot read {self.client_secret_file} "
                             f"({exc.strerror or type(exc).__name__})") from None
        if not value:
            raise ValueError(f"client_secret_file: {self.client_secret_file} is empty")
        return value

    @property
    def secret(self) -> SecretStr:
        return self._secret

    def endpoints(self) -> Endpoints:
        """The same precedence as the default org's settings (:func:`genesys.regions.resolve`)."""
        api_url = (self.api_url or f"https://{api_host(self.region or '')}").rstrip("/")
        return Endpoints(api_url=api_url, login_url=(self.login_url or login_url_for(api_url)).rstrip("/"))


_ALIAS = TypeAdapter(OrgAlias)


def load_orgs(value: object) -> dict[str, Org]:
    """``PARLEY_ORGS`` as the orgs it names: inline JSON, a ``.toml`` file or a JSON file; unset or
    empty: none. Raises ``ValueError`` saying what is wrong (never a secret)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, str):
        value = _parse_text(value.strip())
    if not isinstance(value, Mapping):
        raise ValueError("must map org aliases to orgs (a JSON object or TOML tables)")
    return {_alias(alias): _org(alias, spec) for alias, spec in value.items()}


def _parse_text(text: str) -> Any:
    if text.startswith(("{", "[")):
        return _json(text, "inline JSON")
    path = Path(text)
    try:
        content = path.read_text()
    except OSError as exc:
        raise ValueError(f"is neither inline JSON nor a readable file: {path} "
                         f"({exc.strerror or type(exc).__name__})") from None
    if path.suffix.lower() == ".toml":
        try:
            return tomllib.loads(content)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path} is not valid TOML: {exc}") from None
    return _json(content, str(path))


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def _alias(alias: object) -> str:
    try:
        name = _ALIAS.validate_python(alias)
    except ValidationError:
        raise ValueError(f"org alias {str(alias)[:70]!r} must be 1-64 letters, digits, '_', '.' or '-'") from None
    if name == DEFAULT_ORG:
        raise ValueError("the org 'default' is the PARLEY_GENESYS_* settings; give the others other aliases")
    return name


def _org(alias: str, spec: object) -> Org:
    try:
        return Org.model_validate(spec)
    except ValidationError as exc:
        problems = "; ".join(map(_problem, exc.errors(include_url=False, include_input=False)))
        raise ValueError(f"org {alias!r}: {problems}") from None


def _problem(error: ErrorDetails) -> str:
    where = ".".join(map(str, error["loc"]))
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def known_aliases(orgs: Mapping[str, Org]) -> list[str]:
    """Every alias a command may name: ``default`` first, then the configured ones."""
    return [DEFAULT_ORG, *sorted(orgs)]


class UnknownOrg(LookupError):
    """A command names an org that is not configured; the message lists the ones that are."""

    def __init__(self, alias: str, known: list[str]) -> None:
        super().__init__(f"unknown org {alias!r}; known orgs: {', '.join(known)}")
        self.alias = alias
        self.known = known


def require_known_org(command: Command, orgs: Mapping[str, Org]) -> None:
    """Refuse (:class:`Rejection`, so ingest dead-letters it) a command whose org is not configured:
    nothing is lost, and the reason lists the orgs that are."""
    if command.org == DEFAULT_ORG or command.org in orgs:
        return
    reason = str(UnknownOrg(command.org, known_aliases(orgs)))
    raise Rejection(reason, (FieldError(field="org", message=reason),), command_type=command.type,
                    idempotency_key=command.idempotency_key, correlation_id=command.correlation_id)
