"""``python -m emulator [--host H] [--port P]``: run the Genesys Cloud emulator."""

from __future__ import annotations

import argparse

from emulator.app import serve
from parley.startup import settings_errors_exit


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m emulator", description="Genesys Cloud emulator")
    parser.add_argument("--host", help="default: PARLEY_EMULATOR_HOST or 127.0.0.1")
    parser.add_argument("--port", type=int, help="default: PARLEY_EMULATOR_PORT or 8089")
    args = parser.parse_args()
    with settings_errors_exit():
        serve(args.host, args.port)


if __name__ == "__main__":
    main()
