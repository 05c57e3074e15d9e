"""``/__emulator/``: fixtures, ledger, reset, config, clock and faults - the emulator as a whole."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator.admin import AdminBody, answer
from emulator.config import EmulatorConfig
from emulator.errors import ApiError
from emulator.faults import FaultList, FaultSpec
from emulator.ledger import LedgerFilter, wire_page
from emulator.rest.api import emulator_of
from emulator.rest.bodies import parse_body
from emulator.runtime import ConfigPatch


class ClockAdvance(AdminBody):
    advance_s: float = Field(ge=0, description="Move the emulator's clock forward by this many seconds.")


class ClockState(AdminBody):
    offset_s: float
    now: datetime


async def fixtures(request: Request) -> Response:
    return answer(emulator_of(request).fixtures)


async def ledger(request: Request) -> Response:
    params = request.query_params
    try:
        query = LedgerFilter(
            kind=params.getlist("kind"),
            conversation_id=params.get("conversation_id"),
            after=params.get("after", 0),
        )
    except ValidationError as exc:
        raise ApiError(400, "invalid.query.param.value", message=str(exc.errors()[0]["msg"])) from None
    return JSONResponse(wire_page(emulator_of(request).ledger.entries(query)))


async def reset(request: Request) -> Response:
    emulator_of(request).reset()
    return Response(status_code=204)


async def get_config(request: Request) -> Response:
    return answer(emulator_of(request).config)


async def patch_config(request: Request) -> Response:
    patch = await parse_body(request, ConfigPatch)
    emulator = emulator_of(request)
    try:
        config: EmulatorConfig = emulator.tune(patch)
    except ValidationError as exc:
        raise ApiError(400, "invalid.value", message=str(exc.errors()[0]["msg"])) from None
    return answer(config)


async def advance_clock(request: Request) -> Response:
    body = await parse_body(request, ClockAdvance)
    clock = emulator_of(request).clock
    clock.advance(body.advance_s)
    return answer(ClockState(offset_s=clock.offset_s, now=clock.now()))


# --- faults ----------------------------------------------------------------------------------------
async def list_faults(request: Request) -> Response:
    return answer(FaultList(faults=emulator_of(request).faults.list()))


async def add_fault(request: Request) -> Response:
    spec = await parse_body(request, FaultSpec)
    return answer(emulator_of(request).faults.add(spec), status=201)


async def clear_faults(request: Request) -> Response:
    emulator_of(request).faults.clear()
    return Response(status_code=204)


async def delete_fault(request: Request) -> Response:
    if not emulator_of(request).faults.remove(request.path_params["faultId"]):
        raise ApiError(404, "not.found")
    return Response(status_code=204)


ROUTES = [
    Route("/__emulator/fixtures", fixtures, methods=["GET"]),
    Route("/__emulator/ledger", ledger, methods=["GET"]),
    Route("/__emulator/reset", reset, methods=["POST"]),
    Route("/__emulator/config", get_config, methods=["GET"]),
    Route("/__emulator/config", patch_config, methods=["PATCH"]),
    Route("/__emulator/clock", advance_clock, methods=["POST"]),
    Route("/__emulator/faults", list_faults, methods=["GET"]),
    Route("/__emulator/faults", add_fault, methods=["POST"]),
    Route("/__emulator/faults", clear_faults, methods=["DELETE"]),
    Route("/__emulator/faults/{faultId}", delete_fault, methods=["DELETE"]),
]
