"""The guest worker (seed 004): a long-lived asyncio process that holds guest sessions' websockets.

Start at :mod:`workers.guest.worker` (the process and how its parts fit); the protocols themselves
are the sans-I/O machines in the top-level :mod:`guest` package.

- :mod:`~workers.guest.routing`: ``parley:guest:commands`` to each session's inbox, in order.
- :mod:`~workers.guest.ownership`: worker leases, the routing lease, adoption of a dead worker's sessions.
- :mod:`~workers.guest.store` and :mod:`~workers.guest.keys`: what is kept in Redis per session.
- :mod:`~workers.guest.session`: one session's runner, the I/O driver around a protocol machine.
- :mod:`~workers.guest.webmessaging`, :mod:`~workers.guest.guestchat`: one adapter per protocol.
- :mod:`~workers.guest.commands`, :mod:`~workers.guest.relay`: ending commands; relaying agent events.
- :mod:`~workers.guest.network`: the only socket and HTTP I/O.
- :mod:`~workers.guest.batch`, :mod:`~workers.guest.redis_mux`: many sessions' Redis calls, coalesced.
- :mod:`~workers.guest.settings`: ``PARLEY_GUEST_*``.
"""
