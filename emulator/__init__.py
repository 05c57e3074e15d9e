"""Genesys Cloud emulator: the slice of Genesys Cloud that Parley uses, with faults and a ledger."""

from emulator.app import create_app, serve
from emulator.config import EmulatorConfig

__all__ = ["EmulatorConfig", "create_app", "serve"]
