"""``/__emulator/...``: what a test harness or an operator uses to drive and inspect the emulator.

No token, no rate limit, no faults. Names are fixed (see emulator/README.md):

- :mod:`~emulator.admin.harness`: fixtures, ledger, reset, config, clock, faults;
- :mod:`~emulator.admin.conversations`: helpers that play the other side of a conversation (an
  agent who joins, answers and ends it; a customer who leaves; a guest socket attaching; a Web
  Messaging guest session without a socket);
- :mod:`~emulator.admin.sockets`: the open guest sockets (list, drop, reorder or duplicate frames)
  and the Web Messaging sessions they serve (list, expire, force read-only).

Bodies are strict (:class:`AdminBody`: an unknown field is a 400) and answers plain JSON
(:func:`answer`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from starlette.responses import JSONResponse


class AdminBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


def answer(body: BaseModel, status: int = 200) -> JSONResponse:
    return JSONResponse(body.model_dump(mode="json"), status_code=status)
