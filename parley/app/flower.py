"""Flower as Parley runs it: with ``PARLEY_FLOWER_BASIC_AUTH``, every page, API call and ``/metrics``
needs the password.

Flower 2.2 serves ``/metrics`` without authentication even with basic auth on (flower#1129, #1342),
which would publish task names and rates to anyone who can reach the port; :func:`protect_metrics`
puts it behind the same check as every other page. The credentials reach Flower through its own
``FLOWER_BASIC_AUTH`` environment variable, never its command line (visible in ``ps``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from parley.settings import Settings


def flower_environment(settings: Settings) -> dict[str, str]:
    """What Flower's process needs in its environment for Parley's settings."""
    if settings.flower_basic_auth is None:
        return {}
    return {"FLOWER_BASIC_AUTH": settings.flower_basic_auth.get_secret_value()}


def protect_metrics() -> None:
    from flower.views import monitor
    from tornado import web

    if not getattr(monitor.Metrics.get, "__parley_protected__", False):
        protected = web.authenticated(monitor.Metrics.get)
        protected.__parley_protected__ = True  # type: ignore[attr-defined]
        monitor.Metrics.get = protected  # type: ignore[method-assign]


def main(settings: Settings, argv: Sequence[str]) -> None:
    """Run ``celery -A tasks.app flower ARGV`` in this process, with ``/metrics`` protected."""
    from celery.bin.celery import main as celery_main

    os.environ.update(flower_environment(settings))
    protect_metrics()
    sys.argv = ["celery", "-A", "tasks.app", "flower", *argv]
    celery_main()
