"""``python -m chaos.emulator_server``: the emulator (its own app, unchanged) served on loopback with
the chaos fault mix installed on its fault injector (see :mod:`chaos.faultmix`), plus one route of the
harness's own, ``/__chaos/mix``: ``GET`` the calls faulted so far by kind, ``POST {"enabled": bool}``
to switch the mix on (after the harness's set-up) and off (before it reads everything back).
"""

from __future__ import annotations

import argparse
import gc
import logging

import uvicorn
from pydantic import BaseModel, ConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chaos.config import FaultRates
from chaos.faultmix import FaultDraw, FaultMix
from emulator.app import RedactTokenPaths, create_app
from emulator.config import EmulatorConfig
from emulator.faults import FaultInjector

MIX_PATH = "/__chaos/mix"


class MixSwitch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool


def build(seed: int, rates: FaultRates) -> Starlette:
    app = create_app(EmulatorConfig())
    injector = app.state.emulator.faults
    if not isinstance(injector, FaultInjector):
        raise RuntimeError("the emulator no longer applies faults through its FaultInjector")
    mixed = FaultMix(injector, FaultDraw(rates, seed))

    async def mix(request: Request) -> JSONResponse:
        if request.method == "POST":
            mixed.enabled = MixSwitch.model_validate(await request.json()).enabled
        return JSONResponse({"enabled": mixed.enabled, "counts": dict(mixed.counts)})

    app.router.routes.insert(0, Route(MIX_PATH, mix, methods=["GET", "POST"]))
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos.emulator_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--rates", default="{}", help="FaultRates as JSON")
    args = parser.parse_args()
    app = build(args.seed, FaultRates.model_validate_json(args.rates))
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, access_log=False,
                            log_level="warning")
    logging.getLogger("uvicorn.error").addFilter(RedactTokenPaths())  # guest JWTs ride in websocket paths
    # As `python -m emulator` does: keep collector pauses (not Genesys) out of the latencies.
    gc.freeze()
    gc.set_threshold(50_000, 50, 1_000)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
