"""Parley's logs: one configuration, one redaction unit, and the command a line is about.

Every entry point calls :func:`configure` (the ``parley`` commands, the Celery worker through
Celery's ``setup_logging`` signal, the emulator); after it the root logger has exactly one handler,
which writes JSON lines to stderr (readable text when stderr is a terminal, or as
``PARLEY_LOG_FORMAT`` says) and runs every record through :class:`RedactionFilter`, whichever
logger made it: Parley's, Celery's, uvicorn's, Flower's.

**Redaction** (:class:`Redactor`) works on what a call site passes, not on what it meant to pass:

* arguments and ``extra`` fields are walked before the message is rendered: a dict, a pydantic model
  (a command, an event) or a dataclass has the values of its text-like fields (``text``, ``body``,
  ``message``, ``notes``, ``first_message``, custom attributes...) and its secret-like fields
  (``token``, ``password``, ``authorization``...) masked; an ``httpx`` request or response becomes its
  method, URL and status, never headers or body; an exception becomes its type and redacted text;
* the rendered message, the exception's traceback and every string are then scrubbed of JWTs,
  ``Bearer``/``Basic`` credentials, ``key=value`` / ``"key": "value"`` secrets, passwords in URLs,
  ``whsec_`` secrets, long opaque tokens (32+ characters mixing upper case, lower case and digits),
  every secret registered at start-up from the settings (any ``SecretStr``, the Redis URL's password)
  or later (:func:`register_secret`: OAuth access tokens as they are fetched), and the customer texts
  of the command being executed (:func:`bound` with ``sensitive=``).

**Context**: :func:`bound` binds fields (``command_id``, ``idempotency_key``, ``correlation_id``,
``org``, ``type``, ``session_key``) for a span of work; every line logged inside carries them without
the call site passing them (a contextvar: asyncio tasks inherit it, and :func:`bind` sets it for the
rest of one task).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from functools import lru_cache, partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

MASK = "<redacted>"
CONTEXT_FIELDS = ("command_id", "idempotency_key", "correlation_id", "org", "type", "session_key", "session")
"""The context fields, in the order a line shows them."""

LogFormat = Literal["auto", "json", "text"]

# Field names (lower case, without ``_`` and ``-``) whose values are customer text or secrets.
_CUSTOMER_TEXT_FIELDS = frozenset({
    "text", "body", "textbody", "content", "message", "messages", "notes", "firstmessage", "customername",
    "displayname", "customattributes", "customfields", "attributes", "parameters", "raw", "original",
})
_SECRET_FIELDS = frozenset({
    "token", "accesstoken", "refreshtoken", "jwt", "password", "passwd", "secret", "clientsecret",
    "authorization", "cookie", "setcookie", "apikey", "basicauth", "flowerbasicauth", "webhooksecret",
    "redispassword", "sentinelpassword", "signature", "webhooksignature", "xparleysignature",
})
_SENSITIVE_FIELDS = _CUSTOMER_TEXT_FIELDS | _SECRET_FIELDS

_SECRET_KEY_WORDS = (r"access_token|refresh_token|client_secret|token|jwt|password|passwd|secret|authorization"
                     r"|api_key|apikey")
# (pattern, replacement, words one of which a line must contain for the pattern to be worth running)
_PATTERNS: tuple[tuple[re.Pattern[str], str, tuple[str, ...]], ...] = (
    # A JWT: three base64url parts, the first two JSON objects (so "eyJ").
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), MASK, ("eyj",)),
    # An Authorization header's credentials.
    (re.compile(r"\b(Bearer|bearer|BEARER|Basic|BASIC)(\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\1\2{MASK}",
     ("bearer", "basic")),
    # key=value, key: value, "key": "value" (JSON, query strings, reprs).
    (re.compile(rf"(?i)([\"']?(?:{_SECRET_KEY_WORDS})[\"']?\s*[=:]\s*[\"']?)([^\"'\s&,;)}}\]]+)"), rf"\1{MASK}",
     ("token", "jwt", "passw", "secret", "authorization", "api_key", "apikey")),
    # A password in a URL: scheme://user:password@host.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/@\s:]*:)([^@\s/]+)@"), r"\1***@", ("://",)),
    # The guest JWT in a Guest Chat event stream path, whatever its form.
    (re.compile(r"(/v1/token/)[^\s?\"']+"), rf"\1{MASK}", ("/v1/token/",)),
    # Standard Webhooks secrets.
    (re.compile(r"whsec_[A-Za-z0-9+/=_-]+"), MASK, ("whsec_",)),
)
# An opaque token: 32+ characters of base64(url) with upper case, lower case and digits (ids are hex
# or UUIDs, lower case); OAuth access tokens, client secrets and session tokens look like this.
_OPAQUE = re.compile(r"(?<![A-Za-z0-9_+/-])[A-Za-z0-9_+/-]{32,}={0,2}")


def _mask_opaque(match: re.Match[str]) -> str:
    word = match.group()
    mixed = any(c.isupper() for c in word) and any(c.islower() for c in word) and any(c.isdigit() for c in word)
    return MASK if mixed else word


_MAX_DEPTH = 6
_MAX_SECRETS = 256  # registered at run time (access tokens): the oldest are forgotten first


class Redactor:
    """Masks secrets and customer text in strings and in whatever objects a call site logs."""

    def __init__(self) -> None:
        self._secrets: dict[str, None] = {}  # ordered, so the oldest go first
        self._by_length: list[str] = []  # longest first: a secret that contains another is masked whole

    # -- secrets known by value ---------------------------------------------------------------
    def register(self, *secrets: str | None) -> None:
        """Mask these exact values wherever they appear from now on (too short ones would mask noise)."""
        for secret in secrets:
            if secret and len(secret) >= 6:
                self._secrets.pop(secret, None)
                self._secrets[secret] = None
        while len(self._secrets) > _MAX_SECRETS:
            del self._secrets[next(iter(self._secrets))]
        self._by_length = sorted(self._secrets, key=len, reverse=True)

    def register_settings(self, settings: BaseSettings) -> None:
        """Every ``SecretStr`` in ``settings`` (each space-separated part too, with and without ``whsec_``:
        rotated webhook secrets; the password of ``user:password``) and the password of every URL setting."""
        for name in type(settings).model_fields:
            value = getattr(settings, name)
            if isinstance(value, SecretStr):
                text = value.get_secret_value()
                parts = text.split()
                self.register(text, *parts, *(part.removeprefix("whsec_") for part in parts), text.partition(":")[2])
            elif isinstance(value, str) and "://" in value:
                self.register(_url_password(value))

    def forget_all(self) -> None:
        self._secrets.clear()
        self._by_length.clear()

    # -- strings ------------------------------------------------------------------------------
    def text(self, value: str, sensitive: Iterable[str] = ()) -> str:
        """``value`` with every secret pattern, registered secret and ``sensitive`` text masked."""
        # Longest first: a secret that contains another is masked whole.
        for secret in (sorted((*self._secrets, *sensitive), key=len, reverse=True) if sensitive else self._by_length):
            if secret in value:
                value = value.replace(secret, MASK)
        lowered = value.lower()
        for pattern, replacement, words in _PATTERNS:
            if any(word in lowered for word in words):
                value = pattern.sub(replacement, value)
                lowered = value.lower()
        return _OPAQUE.sub(_mask_opaque, value)

    # -- objects ------------------------------------------------------------------------------
    def value(self, value: object, depth: int = 0) -> object:
        """A JSON-friendly copy of ``value`` with sensitive fields masked (strings are scrubbed later,
        with the rendered line)."""
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return value
        if isinstance(value, SecretStr):
            return MASK
        if depth >= _MAX_DEPTH:
            return f"<{type(value).__name__}>"
        if isinstance(value, BaseException):
            return f"{type(value).__name__}: {value}"
        if isinstance(value, Mapping):
            return self._fields(value.items(), depth)
        if isinstance(value, BaseModel):
            return self._fields(((n, getattr(value, n, None)) for n in type(value).model_fields), depth)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self._fields(((f.name, getattr(value, f.name)) for f in dataclasses.fields(value)), depth)
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(item, depth + 1) for item in value]
        if isinstance(value, bytes | bytearray | memoryview):
            return f"<{len(bytes(value))} bytes>"
        described = _http_message(value)
        if described is not None:
            return described
        return str(value)

    def _fields(self, items: Iterable[tuple[object, object]], depth: int) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, item in items:
            name = str(key)
            sensitive = name.lower().replace("_", "").replace("-", "") in _SENSITIVE_FIELDS
            out[name] = MASK if sensitive and item not in (None, "", [], {}) else self.value(item, depth + 1)
        return out


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _http_message(value: object) -> str | None:
    """An httpx request or response as method, URL (query dropped) and status: never headers or body."""
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx is a dependency
        return None
    if isinstance(value, httpx.Request):
        return f"{value.method} {value.url.copy_with(query=None)}"
    if isinstance(value, httpx.Response):
        try:
            request = _http_message(value.request)
        except RuntimeError:  # a response built without a request
            request = None
        return f"HTTP {value.status_code}" + (f" to {request}" if request else "")
    return None


REDACTOR = Redactor()

# -- context ------------------------------------------------------------------------------------
_context: ContextVar[Mapping[str, str]] = ContextVar("parley_log_context", default=MappingProxyType({}))
Sensitive = str | Callable[[], Iterable[str]]
"""A text to mask, or a function giving them (called only when a line is written: binding stays cheap)."""
_sensitive: ContextVar[tuple[Sensitive, ...]] = ContextVar("parley_log_sensitive", default=())


class bound(AbstractContextManager[None]):  # lower case: used like a function, `with logs.bound(...)`
    """Every line logged inside carries ``fields`` (``None`` values are left out), and has the
    ``sensitive`` texts (a command's customer text) masked.

    A class, not a generator: an exception leaving the block passes through untouched (a generator
    context manager rewrites its traceback, which frozen exceptions such as ``RetryLater`` refuse)."""

    def __init__(self, sensitive: Iterable[Sensitive] = (), **fields: object) -> None:
        self._fields = _strings(fields)
        self._sensitive = tuple(s for s in sensitive if s)
        self._tokens: list[tuple[Token[Mapping[str, str]], Token[tuple[Sensitive, ...]]]] = []

    def __enter__(self) -> None:
        self._tokens.append((_context.set({**_context.get(), **self._fields}),
                             _sensitive.set((*_sensitive.get(), *self._sensitive))))

    def __exit__(self, *_: object) -> None:
        context_token, sensitive_token = self._tokens.pop()
        _sensitive.reset(sensitive_token)
        _context.reset(context_token)


def bind(sensitive: Iterable[Sensitive] = (), **fields: object) -> None:
    """Like :func:`bound`, for the rest of the current context: an asyncio task's own (a guest session's
    runner), which ends with the task."""
    _context.set({**_context.get(), **_strings(fields)})
    _sensitive.set((*_sensitive.get(), *(s for s in sensitive if s)))


def context() -> dict[str, str]:
    """The fields bound here (a copy)."""
    return dict(_context.get())


def customer_texts(model: BaseModel | Mapping[str, object]) -> list[str]:
    """The values of the customer-text fields of a command (model, or its JSON as a dict), however deep:
    what :func:`bound` should mask."""
    found: list[str] = []

    def walk(value: object, sensitive: bool, depth: int) -> None:
        if depth > _MAX_DEPTH:
            return
        if isinstance(value, str):
            if sensitive:
                found.append(value)
        elif isinstance(value, BaseModel):
            for name, item in value.__dict__.items():
                if item is not None:
                    walk(item, sensitive or _is_text_field(name), depth + 1)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, sensitive or _is_text_field(str(key)), depth + 1)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item, sensitive, depth + 1)

    walk(model, False, 0)
    return found


class CommandLike(Protocol):
    """What :func:`command_span` reads: a command record (:class:`parley.records.CommandRecord`)."""

    command_id: str
    idempotency_key: str
    org: str
    type: str
    correlation_id: str | None
    body: str


def command_span(record: CommandLike) -> bound:
    """:func:`bound` for the execution of one command: its ids on every line, its customer text masked."""
    return bound(sensitive=[partial(_body_texts, record.body)], command_id=record.command_id,
                 idempotency_key=record.idempotency_key, correlation_id=record.correlation_id, org=record.org,
                 type=record.type)


def about_command(command: BaseModel, command_id: str) -> bound:
    """:func:`bound` for handling one parsed command (a :mod:`schemas.commands` model) before it has a record."""
    return bound(sensitive=[partial(customer_texts, command)], command_id=command_id,
                 idempotency_key=getattr(command, "idempotency_key", None),
                 correlation_id=getattr(command, "correlation_id", None), org=getattr(command, "org", None),
                 type=getattr(command, "type", None))


class GenesysAnswer(Protocol):
    status: int | None
    code: str | None


def genesys_said(error: GenesysAnswer | None) -> str:
    """What Genesys answered, for the end of a line about a command: `` (Genesys 409 request.conflict)``;
    its status and code only (its message may quote the request)."""
    if error is None or error.status is None:
        return ""
    return f" (Genesys {error.status}{' ' + error.code if error.code else ''})"


def _body_texts(body: str) -> list[str]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return []
    return customer_texts(parsed) if isinstance(parsed, dict) else []


def _sensitive_texts() -> tuple[str, ...]:
    """The texts the bound spans ask to mask, their functions called now."""
    texts: list[str] = []
    for source in _sensitive.get():
        if isinstance(source, str):
            texts.append(source)
        else:
            texts.extend(text for text in source() if text)
    return tuple(texts)


@lru_cache(maxsize=1024)
def _is_text_field(name: str) -> bool:
    return name.lower().replace("_", "").replace("-", "") in _CUSTOMER_TEXT_FIELDS


def _strings(fields: Mapping[str, object]) -> dict[str, str]:
    return {name: str(value) for name, value in fields.items() if value is not None}


def register_secret(*secrets: str | None) -> None:
    """Mask these values in every line this process logs from now on (a token just fetched)."""
    REDACTOR.register(*secrets)


# -- the filter every handler runs ---------------------------------------------------------------
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class RedactionFilter(logging.Filter):
    """The one redaction unit: after it, a record's message, exception text, stack and extra fields are
    safe to write anywhere. It renders the message itself (``args`` walked first, then cleared), so no
    formatter renders the raw arguments again; and it adds the bound context fields."""

    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "parley_redacted", False):
            return True  # a second handler: already done
        sensitive = _sensitive_texts() if _sensitive.get() else ()
        record.msg = self.redactor.text(self._render(record), sensitive)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.text(record.exc_text, sensitive)
        record.exc_info = None  # the formatter uses exc_text, never the live exception again
        if record.stack_info:
            record.stack_info = self.redactor.text(record.stack_info, sensitive)
        for name in [n for n in vars(record) if n not in _RECORD_ATTRIBUTES]:
            setattr(record, name, self._extra(name, getattr(record, name), sensitive))
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)  # ids Parley bound itself: kept whole, so grep finds them
        record.parley_redacted = True
        return True

    def _render(self, record: logging.LogRecord) -> str:
        args = record.args
        msg = str(self.redactor.value(record.msg)) if not isinstance(record.msg, str) else record.msg
        if not args:
            return msg
        if isinstance(args, Mapping):  # log.info("%(a)s", {...}), or one dict for "%s"
            walked = self.redactor.value(args)
            assert isinstance(walked, dict)
            safe: object = ({k: _printable(v) for k, v in walked.items()} if "%(" in msg
                            else (_printable(walked),))
        else:
            safe = tuple(_printable(self.redactor.value(a)) for a in args)
        try:
            return msg % safe
        except (TypeError, ValueError, KeyError):
            return f"{msg} {safe}"

    def _extra(self, name: str, value: object, sensitive: tuple[str, ...]) -> object:
        if name.lower().replace("_", "").replace("-", "") in _SENSITIVE_FIELDS and value not in (None, ""):
            return MASK
        return _scrub(self.redactor.value(value), self.redactor, sensitive)


def _printable(value: object) -> object:
    """Walked values keep their type for ``%d`` and ``%.1f``; structures print as JSON."""
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, ensure_ascii=False)
    return value


def _scrub(value: object, redactor: Redactor, sensitive: tuple[str, ...]) -> object:
    if isinstance(value, str):
        return redactor.text(value, sensitive)
    if isinstance(value, dict):
        return {k: _scrub(v, redactor, sensitive) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, redactor, sensitive) for v in value]
    return value


# -- formats ------------------------------------------------------------------------------------
_NOT_SHOWN = frozenset({"parley_redacted", "color_message"})  # uvicorn's copy of the message with ANSI colours


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, component, msg, the context fields, extra fields,
    and ``exc`` (the redacted traceback)."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "component": self.component,
            "pid": record.process, "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            if (value := getattr(record, name, None)) is not None:
                line[name] = value
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and name not in line and name not in _NOT_SHOWN:
                line[name] = value
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """For a person at a terminal: time, level, logger, message, then the context as key=value."""

    def __init__(self, component: str) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{n}={v}" for n in CONTEXT_FIELDS if (v := getattr(record, n, None)) is not None)
        text = super().format(record)
        if not fields:
            return text
        first, newline, rest = text.partition("\n")
        return f"{first}  [{fields}]{newline}{rest}"


def formatter(component: str, log_format: LogFormat, stream: object = None) -> logging.Formatter:
    """The formatter ``log_format`` names; ``auto``: text on a terminal, JSON otherwise."""
    if log_format == "auto":
        isatty = getattr(stream if stream is not None else sys.stderr, "isatty", None)
        log_format = "text" if isatty is not None and isatty() else "json"
    return TextFormatter(component) if log_format == "text" else JsonFormatter(component)


# -- configuration --------------------------------------------------------------------------------
LOGGERS_WITH_OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task",
                             "celery.redirected", "tornado", "tornado.access", "tornado.application",
                             "tornado.general")


def configure(component: str, log_format: LogFormat | None = None, level: str | None = None) -> None:
    """Send every log record of this process through the redaction unit to stderr, formatted.

    ``component`` (ingest, celery-worker, guest-worker, webhook-relay, emulator, flower...) is on every
    line. The format and level default to ``PARLEY_LOG_FORMAT`` / ``PARLEY_LOG_LEVEL``; the process's
    settings' secrets are registered for masking. Children started later inherit the environment, so
    ``parley run``'s children log the same way.
    """
    from parley.settings import get_settings

    settings = get_settings()
    REDACTOR.register_settings(settings)
    log_format = log_format or settings.log_format
    level = (level or settings.log_level).upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactionFilter())
    handler.setFormatter(formatter(component, log_format, sys.stderr))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in LOGGERS_WITH_OWN_HANDLERS:  # libraries' own handlers would bypass the redaction
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
    logging.captureWarnings(True)

