"""The product's real processes on loopback, started the way a user starts them: the emulator, the
ingestion worker, Celery workers. Used by the tests, the benchmarks (bench/) and the chaos suite, so
none of those imports another's internals (tests/test_layers.py)."""
