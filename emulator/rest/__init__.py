"""Genesys' REST API as the emulator serves it: one module of routes per part of the Platform API.

:mod:`~emulator.rest.api` is how a route is served (who may call it, the per-token limit, the
:class:`~emulator.rest.api.Call` its handler gets); :mod:`~emulator.rest.bodies` reads request
bodies and query parameters into Genesys' 400s; :mod:`~emulator.rest.wire_extra` has the wire
models the swagger slice lacks. The answers are :mod:`emulator.views` of :mod:`emulator.state`.
"""
