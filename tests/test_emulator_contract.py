"""The emulator against Genesys' contract: property-based (schemathesis) and the contract check itself.

Schemathesis generates requests for every operation of the Swagger slice - valid and invalid - and
holds each answer to the contract: no 5xx, a documented status, a declared content type, a body that
validates. A few examples per operation keep it to seconds.
"""

from __future__ import annotations

import copy
from typing import Any

import anyio
import httpx
import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from emulator import EmulatorConfig, create_app
from tests.support import contract
from tests.support.emulator_server import asgi_client, check_contract, fetch_token, guest_chat_body

# One app for the whole run (schemathesis binds it at import); no rate limit: it is not under test.
APP = create_app(EmulatorConfig(rate_limit_enabled=False))
SCHEMA = schemathesis.openapi.from_dict(copy.deepcopy(contract.load()))
SCHEMA.app = APP
SCHEMA.config.generation.update(max_examples=4, deterministic=True)
# The coverage phase enumerates every boundary of every schema: minutes on 279 definitions. Fuzzing
# (valid and invalid data) with a few examples per operation is the bounded run wanted here.
SCHEMA.config.phases.coverage.enabled = False
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


async def _bearer_tokens() -> dict[str, str]:
    async with asgi_client(APP) as http:
        token = await fetch_token(http)
        guest = (await http.post("/api/v2/webchat/guest/conversations", json=guest_chat_body())).json()["jwt"]
        webmessaging = (await http.post("/__emulator/webmessaging/sessions", json={})).json()["jwt"]
    return {"PureCloud OAuth": token, "Guest Chat JWT": guest, "Webmessaging JWT": webmessaging}


@pytest.fixture(scope="module")
def bearer() -> dict[str, str]:
    """A bearer token per security scheme, so generated calls get past authentication."""
    return anyio.run(_bearer_tokens)


def _scheme(case: schemathesis.Case) -> str:
    security: list[dict[str, Any]] = case.operation.definition.raw.get("security") or [{}]
    return next(iter(security[0]), "none")


@SCHEMA.parametrize()
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_calls_get_contract_answers(case: schemathesis.Case, bearer: dict[str, str]) -> None:
    token = bearer.get(_scheme(case))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    case.call_and_validate(headers=headers, checks=CHECKS)


# --- the contract check of the test client (tests/support/emulator_server.py) --------------------------
def _answer(method: str, path: str, status: int, body: Any, correlation: str = "c-1") -> httpx.Response:
    request = httpx.Request(method, f"http://emulator.test{path}")
    return httpx.Response(status, json=body, headers={"ININ-Correlation-Id": correlation}, request=request)


ERROR = {"message": "m", "code": "not.found", "status": 404, "contextId": "c-1", "details": [], "errors": []}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "response",
    [
        _answer("GET", "/api/v2/conversations/x", 200, {"participants": "not-a-list", "startTime": "t"}),
        _answer("GET", "/api/v2/conversations/x", 418, ERROR | {"status": 418}),
        _answer("GET", "/api/v2/conversations/x", 404, ERROR, correlation="c-2"),
        _answer("GET", "/api/v2/conversations/x", 404, {"code": 404}),
        _answer("GET", "/api/v2/invented", 200, {}),
    ],
    ids=["bad-body", "undocumented-status", "context-id-mismatch", "not-an-error-body", "success-off-contract"],
)
async def test_the_contract_check_catches_violations(response: httpx.Response) -> None:
    with pytest.raises((AssertionError, jsonschema.ValidationError)):
        await check_contract(response)


@pytest.mark.anyio
async def test_the_contract_check_accepts_a_documented_error() -> None:
    await check_contract(_answer("GET", "/api/v2/conversations/x", 404, ERROR))
