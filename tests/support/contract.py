"""Validate JSON bodies against Genesys' own Swagger 2.0 definitions in ../shared/contracts.

Swagger 2.0 schemas are JSON Schema draft 4 plus ``x-*`` keywords, which jsonschema ignores. A
definition is validated by pointing a ``$ref`` at it inside a document that holds all definitions,
so nested ``#/definitions/...`` references resolve.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

CONTRACTS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "contracts"
PLATFORM = "genesys-platform-slice.swagger.json"
WEBMESSAGING = "genesys-webmessaging-guest.swagger.json"


@cache
def load(name: str = PLATFORM) -> dict[str, Any]:
    return json.loads((CONTRACTS_DIR / name).read_text())


@cache
def _validator(schema_json: str, name: str) -> jsonschema.Draft4Validator:
    schema = json.loads(schema_json)
    schema["definitions"] = load(name)["definitions"]
    return jsonschema.Draft4Validator(schema)


def validate_definition(body: Any, definition: str, *, contract: str = PLATFORM) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``body`` is a valid ``definition``."""
    if definition not in load(contract)["definitions"]:
        raise KeyError(f"{definition} is not a definition in {contract}")
    _validator(json.dumps({"$ref": f"#/definitions/{definition}"}), contract).validate(body)


def _operation(method: str, path: str) -> dict[str, Any]:
    """The Swagger operation whose path template matches a concrete path."""
    paths = load(PLATFORM)["paths"]
    for template, ops in paths.items():
        pattern = "^" + re.sub(r"\{[^}]+\}", r"[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in ops:
            return ops[method.lower()]
    raise KeyError(f"no operation {method} {path} in the contract")


def _schema_json(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True)


def validate_request(method: str, path: str, body: Any) -> None:
    """Validate a request body against the operation's ``in: body`` parameter."""
    op = _operation(method, path)
    params = [p for p in op.get("parameters", []) if p.get("in") == "body"]
    if not params:
        if body not in (None, b"", ""):
            raise AssertionError(f"{method} {path} takes no body in the contract, got {body!r}")
        return
    _validator(_schema_json(params[0]["schema"]), PLATFORM).validate(body)


def validate_response(method: str, path: str, status: int, body: Any) -> None:
    """Validate a response body against the operation's response for ``status``."""
    op = _operation(method, path)
    responses = op.get("responses", {})
    if str(status) not in responses:
        raise AssertionError(f"{method} {path} has no documented {status} response")
    schema = responses[str(status)].get("schema")
    if schema is None:
        return
    _validator(_schema_json(schema), PLATFORM).validate(body)


def error_codes(method: str, path: str) -> dict[str, list[str]]:
    """``x-inin-error-codes`` of an operation: status -> codes it may return."""
    op = _operation(method, path)
    out: dict[str, list[str]] = {}
    for status, resp in op.get("responses", {}).items():
        codes = resp.get("x-inin-error-codes") or {}
        out[status] = list(codes)
    return out
