"""The application: what a user runs and types (the `parley` command, `parley run` and its embedded Redis,
`parley status`, `parley health`, `parley demo`, Flower). It sits on top of everything else: it starts the
workers (``workers``, ``tasks``) and the emulator, and nothing below imports it (tests/test_layers.py)."""
