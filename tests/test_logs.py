"""The one redaction unit, the JSON and text formats, and the context a line carries (parley/logs.py)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from pydantic import SecretStr

from parley import logs
from parley.settings import Settings
from schemas.commands import COMMAND_ADAPTER

JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJndWVzdCIsImV4cCI6MTcwMDAwMDAwMH0"
       ".c2lnbmF0dXJlLW9mLXRoZS1ndWVzdC1qd3Q")
ACCESS_TOKEN = "q3Xv9LmP2rT8sW1yZ4bN7cK0dF5gH6jA2eU8iO5rT1wQzR7mY3nB9xC4vL6kJ0hG"
CLIENT_SECRET = "Zq8vR2mW5tY1kP9sX3nB7cL0dF4hJ6gA2eU8iO5rT1w"
REDIS_PASSWORD = "correct-horse-battery-staple"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CUSTOMER_TEXT = "my card number is 4111 1111 1111 1111, please call me"
CUSTOMER_TEXTS = (CUSTOMER_TEXT, "Your order has shipped")
Lines = Callable[[], list[dict[str, object]]]
SECRETS = (JWT, ACCESS_TOKEN, CLIENT_SECRET, REDIS_PASSWORD, WEBHOOK_SECRET, *CUSTOMER_TEXTS)


@pytest.fixture
def lines() -> Iterator[Callable[[], list[dict[str, object]]]]:
    """Log lines as the JSON handler writes them, with the test settings' secrets registered."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.RedactionFilter())
    handler.setFormatter(logs.JsonFormatter("test"))
    logs.REDACTOR.register_settings(Settings(
        redis_url=f"redis://parley:{REDIS_PASSWORD}@127.0.0.1:6379/0",
        genesys_client_secret=SecretStr(CLIENT_SECRET), webhook_url="http://127.0.0.1:9/hook",
        webhook_secret=SecretStr(WEBHOOK_SECRET)))
    logger = logging.getLogger("parley.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)
        logs.REDACTOR.forget_all()


def emit(_secrets_registered: Lines, *calls: tuple[object, ...], **kwargs: object) -> list[dict[str, object]]:
    """Log each call's (msg, *args) and return the lines written."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.RedactionFilter())
    handler.setFormatter(logs.JsonFormatter("test"))
    logger = logging.getLogger("parley.test_logs.emit")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        for msg, *args in calls:
            logger.info(msg, *args, **kwargs)  # type: ignore[arg-type]
    finally:
        logger.removeHandler(handler)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def assert_clean(line: object) -> None:
    text = json.dumps(line)
    for secret in SECRETS:
        assert secret not in text, f"{secret[:12]}... leaked: {text}"
        assert json.dumps(secret)[1:-1] not in text


# -- kinds of secret, in the message and in its arguments ---------------------------------------------

@pytest.mark.parametrize("message", [
    f"guest jwt {JWT}",
    f"Authorization: Bearer {ACCESS_TOKEN}",
    f"headers {{'authorization': 'Bearer {ACCESS_TOKEN}'}}",
    f'{{"access_token": "{ACCESS_TOKEN}", "expires_in": 86400}}',
    f"POST https://login.example/oauth/token?client_secret={CLIENT_SECRET}&grant_type=client_credentials",
    f"connecting to redis://parley:{REDIS_PASSWORD}@10.0.0.5:6379/0",
    f"connecting to rediss://:{REDIS_PASSWORD}@10.0.0.5:6379/0",
    f"secret is {WEBHOOK_SECRET}",
    f"its key alone: {WEBHOOK_SECRET.removeprefix('whsec_')}",
    f"client secret {CLIENT_SECRET} alone",
    f"password {REDIS_PASSWORD} alone (registered from the settings)",
    f"/v1/token/{JWT} accepted",
    f"an unregistered opaque token Xy7{ACCESS_TOKEN[::-1]}",
])
def test_every_kind_of_secret_is_masked_in_the_message_and_as_an_argument(
        lines: Lines, message: str) -> None:
    for line in emit(lines, (message,), ("value: %s", message), ("values: %(v)s", {"v": message})):
        assert_clean(line)
        assert logs.MASK in str(line["msg"]) or "***" in str(line["msg"])


def test_ids_and_ordinary_words_stay_readable(lines: Lines) -> None:
    message = ("command 3f2a9c1e8b7d4e6fa0b1c2d3e4f5a6b7 (message.send) for conversation "
               "6f1c2a9e-3b7d-4c55-9a0e-2f4b8d1e7c30: Genesys 409 request.conflict, retrying in 1.5 s; "
               "basic auth: PARLEY_FLOWER_BASIC_AUTH; entry 1700000000000-0")
    [line] = emit(lines, (message,))
    assert line["msg"] == message


def test_numbers_keep_their_format(lines: Lines) -> None:
    [line] = emit(lines, ("waits %.1f s, attempt %d of %s", 2.25, 3, "8"))
    assert line["msg"] == "waits 2.2 s, attempt 3 of 8"


# -- customer text in structures ----------------------------------------------------------------------

def test_a_command_model_passed_as_an_argument_shows_ids_not_text(lines: Lines) -> None:
    command = COMMAND_ADAPTER.validate_python({
        "type": "message.send", "idempotency_key": "order-42-shipped", "channel": "webmessaging",
        "from_address": "e1b6f3a8-52c9-4d7e-8a10-b4c3d2e5f607",
        "external_contact_id": "2e6b9d14-7f3a-4c85-a1e0-5d8c3b7f9a26", "text": CUSTOMER_TEXT})
    [line] = emit(lines, ("got %s", command))
    assert_clean(line)
    assert "order-42-shipped" in str(line["msg"]) and "2e6b9d14-7f3a-4c85-a1e0-5d8c3b7f9a26" in str(line["msg"])


def test_nested_dicts_lists_and_dataclasses_are_walked(lines: Lines) -> None:
    @dataclass
    class Frame:
        action: str
        token: str
        message: dict[str, object]

    payload = {"events": [{"body": {"text": CUSTOMER_TEXT}}, Frame("onMessage", ACCESS_TOKEN,
                                                                   {"text": CUSTOMER_TEXTS[1], "type": "Text"})],
               "custom_attributes": {"note": CUSTOMER_TEXT}, "password": REDIS_PASSWORD, "count": 2}
    [line] = emit(lines, ("frame %s", payload))
    assert_clean(line)
    assert "onMessage" in str(line["msg"]) and '"count": 2' in str(line["msg"])


def test_extra_fields_are_redacted_and_kept_as_fields(lines: Lines) -> None:
    [line] = emit(lines, ("delivered",), extra={"status": 200, "body": CUSTOMER_TEXT, "detail": {
        "url": f"redis://u:{REDIS_PASSWORD}@h/0", "headers": {"Authorization": f"Bearer {ACCESS_TOKEN}"}}})
    assert_clean(line)
    assert line["status"] == 200 and line["body"] == logs.MASK


def test_an_httpx_request_and_response_show_method_url_and_status_only(lines: Lines) -> None:
    request = httpx.Request("POST", f"https://api.example/api/v2/conversations/messages/agentless?token={ACCESS_TOKEN}",
                            headers={"Authorization": f"Bearer {ACCESS_TOKEN}"}, json={"textBody": CUSTOMER_TEXT})
    response = httpx.Response(400, json={"message": f"bad text {CUSTOMER_TEXT}"}, request=request)
    [line] = emit(lines, ("%s -> %s", request, response))
    assert_clean(line)
    assert line["msg"] == ("POST https://api.example/api/v2/conversations/messages/agentless -> "
                           "HTTP 400 to POST https://api.example/api/v2/conversations/messages/agentless")


def test_an_exception_and_its_traceback_are_redacted(lines: Lines) -> None:
    try:
        raise ConnectionError(f"cannot reach redis://:{REDIS_PASSWORD}@10.0.0.5:6379 with Bearer {ACCESS_TOKEN}")
    except ConnectionError as exc:
        logging.getLogger("parley.test_logs").exception("failed: %s (jwt %s)", exc, JWT)
    [line] = lines()
    assert_clean(line)
    assert "ConnectionError" in str(line["exc"]) and "Traceback" in str(line["exc"])


def test_a_non_string_message_is_walked_too(lines: Lines) -> None:
    logging.getLogger("parley.test_logs").warning({"text": CUSTOMER_TEXT, "client_secret": CLIENT_SECRET})
    [line] = lines()
    assert_clean(line)


def test_a_token_registered_at_run_time_is_masked_from_then_on(lines: Lines) -> None:
    token = "short-but-registered"
    logs.register_secret(token)
    [line] = emit(lines, ("token in prose: %s", token))
    assert token not in json.dumps(line)


# -- context --------------------------------------------------------------------------------------------

def test_bound_fields_are_on_every_line_inside_and_gone_after(lines: Lines) -> None:
    log = logging.getLogger("parley.test_logs")
    with logs.bound(command_id="c1", idempotency_key="order-42", org="default", type="message.send",
                    correlation_id=None):
        log.info("outer")
        with logs.bound(correlation_id="corr-7"):
            log.info("inner")
    log.info("after")
    outer, inner, after = lines()
    assert {k: outer.get(k) for k in ("command_id", "idempotency_key", "org", "type")} == {
        "command_id": "c1", "idempotency_key": "order-42", "org": "default", "type": "message.send"}
    assert "correlation_id" not in outer and inner["correlation_id"] == "corr-7" and inner["command_id"] == "c1"
    assert "command_id" not in after


def test_the_command_s_customer_text_is_masked_inside_its_span_even_in_prose(lines: Lines) -> None:
    command = COMMAND_ADAPTER.validate_python({
        "type": "guest.send", "idempotency_key": "k", "session_key": "s-1", "text": CUSTOMER_TEXT})
    assert logs.customer_texts(command) == [CUSTOMER_TEXT]
    with logs.bound(sensitive=logs.customer_texts(command), command_id="c2"):
        logging.getLogger("parley.test_logs").info("sending " + CUSTOMER_TEXT)
    [line] = lines()
    assert_clean(line)


def test_an_asyncio_task_keeps_what_it_bound_and_its_children_inherit_it(lines: Lines) -> None:
    log = logging.getLogger("parley.test_logs")

    async def session(key: str) -> None:
        logs.bind(session_key=key)
        await asyncio.sleep(0)
        await asyncio.create_task(asyncio.to_thread(log.info, "child of %s", key))

    async def main() -> None:
        await asyncio.gather(session("a"), session("b"))
        log.info("outside")

    asyncio.run(main())
    by_message = {line["msg"]: line.get("session_key") for line in lines()}
    assert by_message == {"child of a": "a", "child of b": "b", "outside": None}


# -- formats and configuration ------------------------------------------------------------------------

def test_json_lines_have_the_documented_fields(lines: Lines) -> None:
    with logs.bound(command_id="c3", type="cobrowse.start"):
        logging.getLogger("parley.test_logs").warning("slow")
    [line] = lines()
    assert set(line) == {"ts", "level", "logger", "component", "pid", "msg", "command_id", "type"}
    assert line["level"] == "WARNING" and line["logger"] == "parley.test_logs" and line["component"] == "test"
    assert str(line["ts"]).endswith("+00:00")


def test_text_format_puts_the_context_after_the_message() -> None:
    record = logging.LogRecord("parley.runner", logging.INFO, __file__, 1, "done %s", ("ok",), None)
    with logs.bound(command_id="c4", org="default"):
        logs.RedactionFilter().filter(record)
    text = logs.TextFormatter("test").format(record)
    assert text.endswith("INFO    parley.runner: done ok  [command_id=c4 org=default]")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_format_is_text_on_a_terminal_and_json_elsewhere() -> None:
    assert isinstance(logs.formatter("x", "auto", _Tty()), logs.TextFormatter)
    assert isinstance(logs.formatter("x", "auto", io.StringIO()), logs.JsonFormatter)
    assert isinstance(logs.formatter("x", "json", _Tty()), logs.JsonFormatter)
    assert isinstance(logs.formatter("x", "text", io.StringIO()), logs.TextFormatter)


def test_configure_leaves_one_redacting_handler_and_takes_over_libraries(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    uvicorn = logging.getLogger("uvicorn.error")
    uvicorn.addHandler(logging.StreamHandler())  # as uvicorn's own dictConfig would
    monkeypatch.setenv("PARLEY_LOG_FORMAT", "json")
    monkeypatch.setenv("PARLEY_LOG_LEVEL", "warning")
    monkeypatch.setenv("PARLEY_GENESYS_CLIENT_SECRET", CLIENT_SECRET)
    from parley.settings import get_settings
    get_settings.cache_clear()
    try:
        logs.configure("emulator")
        assert [type(f) for f in root.handlers[0].filters] == [logs.RedactionFilter] and len(root.handlers) == 1
        assert not uvicorn.handlers and uvicorn.propagate
        uvicorn.info("dropped: below WARNING")
        uvicorn.warning("client secret %s", CLIENT_SECRET)
        [line] = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
        assert line["component"] == "emulator" and line["msg"] == f"client secret {logs.MASK}"
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
        logs.REDACTOR.forget_all()
        get_settings.cache_clear()


def test_log_settings_accept_any_case() -> None:
    settings = Settings(log_format="JSON", log_level="debug")  # type: ignore[arg-type]
    assert (settings.log_format, settings.log_level) == ("json", "DEBUG")


def test_genesys_credentials_and_tokens_are_registered_as_they_are_made(lines: Lines) -> None:
    from genesys.auth import CachedToken, ClientCredentials

    secret, token = "only-letters-secret-ForAnotherOrg", "AccessTokenWithoutAnyDigitsAtAll_xyz"
    ClientCredentials(client_id="c", client_secret=SecretStr(secret))
    CachedToken.load(json.dumps({"access_token": token, "refresh_at": 1.0, "expires_at": 2.0}))
    [line] = emit(lines, ("sent %s with %s", secret, token))
    assert line["msg"] == f"sent {logs.MASK} with {logs.MASK}"


def test_what_genesys_said_is_its_status_and_code_only() -> None:
    from schemas.events import GenesysErrorInfo

    error = GenesysErrorInfo(status=400, code="bad.request", message=f"text {CUSTOMER_TEXT} is too long")
    assert logs.genesys_said(error) == " (Genesys 400 bad.request)"
    assert logs.genesys_said(GenesysErrorInfo(status=503)) == " (Genesys 503)"
    assert logs.genesys_said(None) == logs.genesys_said(GenesysErrorInfo()) == ""


def test_an_exception_leaves_a_span_untouched_even_a_frozen_one(lines: Lines) -> None:
    @dataclass(frozen=True)
    class Later(Exception):
        delay_s: float

    with pytest.raises(Later), logs.bound(command_id="c5"):
        raise Later(1.0)  # a generator context manager would fail to set its __traceback__
    assert logs.context() == {}


def test_a_span_s_sensitive_texts_are_computed_only_when_a_line_is_written(lines: Lines) -> None:
    calls: list[int] = []

    def texts() -> list[str]:
        calls.append(1)
        return [CUSTOMER_TEXT]

    with logs.bound(sensitive=[texts]):
        assert not calls
        logging.getLogger("parley.test_logs").info("the customer wrote: %s", CUSTOMER_TEXT)
        assert len(calls) == 1
    assert_clean(lines()[-1])


def test_command_span_masks_the_texts_of_the_record_s_body(lines: Lines) -> None:
    @dataclass
    class Record:
        command_id: str = "c6"
        idempotency_key: str = "k6"
        org: str = "default"
        type: str = "message.send"
        correlation_id: str | None = "corr"
        body: str = json.dumps({"type": "message.send", "text": CUSTOMER_TEXT, "template": {
            "response_id": "r", "parameters": {"1": CUSTOMER_TEXTS[1]}}})

    with logs.command_span(Record()):
        logging.getLogger("parley.test_logs").error("could not send %r or %s", CUSTOMER_TEXT, CUSTOMER_TEXTS[1])
    [line] = lines()
    assert_clean(line)
    assert (line["command_id"], line["idempotency_key"], line["correlation_id"]) == ("c6", "k6", "corr")


def test_a_celery_task_s_lines_carry_its_command_from_prerun_to_postrun(lines: Lines) -> None:
    from celery import signals

    import tasks.logging_hooks  # noqa: F401 - connects the hooks

    ref = {"command_id": "c7", "type": "cobrowse.start", "org": "default", "idempotency_key": "k7", "targets": {}}
    signals.task_prerun.send(sender=None, task_id="c7", task=None, args=(), kwargs=ref)
    log = logging.getLogger("parley.test_logs")  # as celery.app.trace's "Task ... retry" line would
    log.info("Task parley.cobrowse.start[c7] retry: Retry in 1s")
    signals.task_postrun.send(sender=None, task_id="c7", task=None, args=(), kwargs=ref, retval=None, state="RETRY")
    log.info("after")
    inside, after = lines()
    assert {k: inside[k] for k in ("command_id", "type", "org", "idempotency_key")} == {
        "command_id": "c7", "type": "cobrowse.start", "org": "default", "idempotency_key": "k7"}
    assert "command_id" not in after
