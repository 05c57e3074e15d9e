"""Parley's chaos suite: the whole product under faults, judged by what Genesys (the emulator) saw.

``python -m chaos`` (``make chaos``) starts a real redis-server with AOF, the emulator on loopback with
injected faults, the ingestion worker, two Celery workers and two guest workers; drives seeded load
through them while it kills workers and restarts Redis; then checks the emulator's ledger and the event
stream (never Parley's own records) and prints a verdict.

Modules, one concern each:

* :mod:`chaos.config`   - the run's knobs and the Parley/emulator settings it runs with
* :mod:`chaos.cluster`  - the processes: start, watch, kill, restart, clean up
* :mod:`chaos.emulator` - the emulator's admin API and a Genesys client for the harness's own reads
* :mod:`chaos.faultmix` - per-call Genesys faults (409, 503, 429, lost answers, latency)
* :mod:`chaos.emulator_server` - the emulator served with that fault mix
* :mod:`chaos.load`     - the seeded commands: valid, duplicated, invalid; guest sessions
* :mod:`chaos.follow`   - following ``parley:events`` live
* :mod:`chaos.driver`   - submitting the load at the pace Parley keeps up with
* :mod:`chaos.faults`   - the kill / restart schedule and carrying it out
* :mod:`chaos.observe`  - what is collected at the end (events, dead letters, ledger, read-backs)
* :mod:`chaos.outcomes` - the event stream indexed by command
* :mod:`chaos.verdict`  - the checks, gathered: ended once, duplicates, failures, dead letters, workers
* :mod:`chaos.effects`  - REST effects in the ledger, each its command's own, nothing extra
* :mod:`chaos.guestcheck` - guest messages both ways, none lost or doubled
* :mod:`chaos.recovery` - recovery time per fault
* :mod:`chaos.models`   - violations and figures
* :mod:`chaos.report`   - the figures and violations as a table
* :mod:`chaos.run`      - one run from start to verdict, always cleaned up
"""
