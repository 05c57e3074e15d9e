"""Reading requests the way Genesys does: JSON bodies into the wire models, and query parameters.

Bodies are parsed with the request models of :mod:`genesys.models` (unknown properties forbidden),
and a pydantic error becomes Genesys' 400: ``invalid.property`` naming the property, an operation's
own "may not be null" code for a missing required field (e.g.
``chat.error.notnull.createconversationrequest.queueid``), else ``constraint.validation``, and
``invalid.value`` for a value of the wrong type or outside an enumeration. Malformed JSON is
``bad.request``; a body that is not JSON is 415 ``unsupported.media.type``.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from starlette.requests import Request

from emulator.errors import ApiError
from genesys.models import ErrorDetail

M = TypeVar("M", bound=BaseModel)

_NO_OVERRIDES: Mapping[str, str] = {}


async def parse_body(
    request: Request,
    model: type[M],
    *,
    missing_codes: Mapping[str, str] = _NO_OVERRIDES,
    required: bool = True,
) -> M:
    """The request body as ``model``; ``missing_codes`` maps a dotted JSON path to its not-null code."""
    raw = await request.body()
    if not raw.strip():
        if required:
            raise ApiError(400, "bad.request", message="A request body is required.")
        return model()
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type and not (content_type == "application/json" or content_type.endswith("+json")):
        raise ApiError(415, "unsupported.media.type")
    try:
        data: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad.request") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad.request")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _to_api_error(exc.errors()[0], model, missing_codes) from None


def _to_api_error(error: ErrorDetails, model: type[BaseModel], missing_codes: Mapping[str, str]) -> ApiError:
    loc = [str(part) for part in error["loc"] if not isinstance(part, int)]
    path = ".".join(loc)
    kind = error["type"]
    detail = [ErrorDetail(field_name=path, error_code=kind)]
    if kind == "extra_forbidden":
        params = {"property": loc[-1], "object": _object_name(model, loc[:-1])}
        return ApiError(400, "invalid.property", message_params=params, details=detail)
    if kind == "missing" or error.get("input", "") is None:
        code = missing_codes.get(path.lower())
        if code:
            return ApiError(400, code, details=detail)
        return ApiError(400, "constraint.validation", message_params={"field": path}, details=detail)
    if kind in ("string_too_long", "too_long"):
        return ApiError(400, "max.length.exceeded", details=detail)
    allowed = str((error.get("ctx") or {}).get("expected", ""))
    params = {"value": str(error.get("input"))[:100], "field": path, "allowed": allowed}
    return ApiError(400, "invalid.value", message_params=params, details=detail)


def _object_name(model: type[BaseModel], loc: list[str]) -> str:
    """The contract name of the object at ``loc`` (e.g. WebChatRoutingTarget), for invalid.property."""
    current: type[BaseModel] = model
    for name in loc:
        field = next(
            (f for key, f in current.model_fields.items() if name in (key, f.alias)),
            None,
        )
        nested = _model_in(field.annotation) if field else None
        if nested is None:
            return name
        current = nested
    return str(getattr(current, "DEFINITION", "") or current.__name__)


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) in (typing.Union, list):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found:
                return found
    return None


# --- query parameters ------------------------------------------------------------------------------
def _bad_query(name: str, value: str, allowed: str) -> ApiError:
    params = {"value": value[:100], "parameter": name, "allowed": allowed}
    return ApiError(400, "invalid.query.param.value", message_params=params)


def query_bool(request: Request, name: str, default: bool) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return default
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _bad_query(name, value, "true, false")


def query_int(request: Request, name: str, default: int, *, lo: int, hi: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise _bad_query(name, value, f"an integer from {lo} to {hi}") from None
    if not lo <= number <= hi:
        raise _bad_query(name, value, f"an integer from {lo} to {hi}")
    return number


def query_choice(request: Request, name: str, default: str, choices: tuple[str, ...]) -> str:
    value = request.query_params.get(name)
    if value is None:
        return default
    if value not in choices:
        raise _bad_query(name, value, ", ".join(choices))
    return value
