"""``POST /oauth/token``: the client-credentials grant of Genesys' login host.

Errors here use the OAuth shape ``{error, description, error_description}``, not ErrorBody, as Genesys'
login host does; a bad client id or secret is **400** ``invalid_client`` (RFC 6749 section 5.2), not 401.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emulator.rest.api import Auth, Call, api_route
from genesys.models import OAuthError, OAuthToken


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    body = OAuthError(error=error, description=description, error_description=description)
    return JSONResponse(body.model_dump(), status_code=status)


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, sep, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (client_id, secret) if sep else None


async def token(call: Call) -> Response:
    request = call.request
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    grant_type = form.get("grant_type", [""])[0]
    if not grant_type:
        return _oauth_error(400, "invalid_request", "grant_type is required")
    if grant_type != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", f"Unsupported grant type: {grant_type[:40]}")
    credentials = _basic_credentials(request)
    fixtures = call.fixtures
    if (
        credentials is None
        or credentials[0] != fixtures.client_id
        or not hmac.compare_digest(credentials[1].encode(), fixtures.client_secret.encode())
    ):
        return _oauth_error(400, "invalid_client", "client authentication failed")
    expires_in = call.config.token_expires_in_s
    issued = call.tokens.issue(fixtures.client_id, call.clock.time(), expires_in)
    call.ledger.record(call.clock.now(), "token.issued", by="client", client_id=fixtures.client_id)
    body = OAuthToken(access_token=issued.token, token_type="bearer", expires_in=expires_in)
    return JSONResponse(body.model_dump())


# No bearer token, hence no per-token limit: the caller is getting one.
ROUTES = [api_route("/oauth/token", token, methods=["POST"], auth=Auth.NONE)]
