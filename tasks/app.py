"""The Celery application, configured for at-least-once delivery on Redis.

Each setting answers a failure mode in ../shared/reference/celery-redis-reliability.md:
late acks + reject on a lost worker (a crash redelivers instead of losing the task), prefetch 1,
one visibility timeout set in all three places and kept above every runtime and countdown (else
Redis redelivers running or waiting tasks), soft shutdown (held tasks are requeued on SIGTERM),
connection retry forever (a Redis restart must not end the worker).

The broker is whatever :func:`tasks.transport.celery_broker` makes of the Redis settings (one server,
TLS, or a Sentinel master); its own transport options (the master name, the Sentinels' login) join the
reliability options, which stay the same in all three places whichever it is.
"""

from __future__ import annotations

from celery import Celery

import tasks.logging_hooks  # noqa: F401 - the worker logs through parley.logs, each task bound to its command
from parley import keys, metrics
from parley.settings import Settings, get_settings
from parley.startup import settings_errors_exit
from tasks.transport import celery_broker


def make_config(settings: Settings) -> dict[str, object]:
    settings.check()
    broker = celery_broker(settings)
    transport = {
        **broker.pop("transport_options"),
        "visibility_timeout": settings.visibility_timeout_s,
        # kombu 5.7 scans for expired unacked tasks every interval x throttle seconds (100 s by default);
        # a throttle of 1 makes a dead worker's tasks come back one interval after the timeout.
        "unacked_restore_interval": settings.unacked_restore_interval_s,
        "unacked_restore_throttle": 1,
    }
    return {
        **broker,  # broker_url, broker_transport and, for rediss://, broker_use_ssl
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "visibility_timeout": settings.visibility_timeout_s,
        "task_time_limit": settings.task_time_limit_s,
        "task_soft_time_limit": max(1, settings.task_time_limit_s - 5),
        "worker_soft_shutdown_timeout": 30.0,
        "worker_enable_soft_shutdown_on_idle": True,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        # Publishing (dispatch, retries) rides out a Redis restart instead of failing after 3 tries.
        "task_publish_retry": True,
        "task_publish_retry_policy": {"max_retries": 60, "interval_start": 0.1, "interval_step": 0.5,
                                      "interval_max": 2.0},
        "worker_send_task_events": True,
        # Flower learns of a task from the worker's task-received event; a task-sent event would be a
        # second publish per command in the ingest worker (a quarter of its CPU). Queue depth is on
        # Flower's Broker page.
        "task_send_sent_event": False,
        "task_default_queue": keys.CELERY_QUEUE,
        "worker_hijack_root_logger": False,
        "include": ["tasks.commands"],
    }


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    celery_app = Celery("parley")
    celery_app.conf.update(make_config(settings))
    return celery_app


with settings_errors_exit():  # `celery -A tasks.app worker` with a bad setting: one sentence, exit 2
    app = make_app()
metrics.serve_celery_worker(get_settings())
