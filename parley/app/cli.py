"""The `parley` command."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import redis
import typer

from parley.settings import Settings, get_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Drive Genesys Cloud conversations from Redis.")
dead_app = typer.Typer(no_args_is_help=True, help="Inspect and replay dead letters.")
app.add_typer(dead_app, name="dead")


def _client() -> redis.Redis:
    """Redis for the commands a user types: PARLEY_REDIS_URL, or else the one ``parley run`` embeds."""
    from parley.app.redis_server import embedded
    from parley.connections import configured, connect, describe

    settings = get_settings()
    hint = "is the Redis up?"
    if not configured(settings):
        # Through the environment, like `parley run` tells its workers: whatever reads the settings
        # later in this process (the Celery app the status probe uses) finds the same Redis.
        os.environ["PARLEY_REDIS_URL"] = embedded(settings).url
        get_settings.cache_clear()
        settings = get_settings()
        hint = "start `parley run`, or set PARLEY_REDIS_URL"
    client = connect(settings)
    try:
        client.ping()
    except redis.AuthenticationError as exc:  # a ConnectionError too, but the Redis did answer: say what it said
        typer.echo(f"the Redis at {describe(settings)} refused the login: {exc}", err=True)
        raise typer.Exit(2) from None
    except (redis.ConnectionError, redis.TimeoutError):
        typer.echo(f"no Redis answers at {describe(settings)}: {hint}", err=True)
        raise typer.Exit(2) from None
    return client


def _worker_settings() -> Settings:
    """Settings for a worker run on its own: it needs PARLEY_REDIS_URL (``parley run`` passes it on)."""
    from parley.connections import RedisNotConfigured, redis_url

    settings = get_settings()
    try:
        redis_url(settings)
    except RedisNotConfigured as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    return settings


def _logging(component: str) -> None:
    from parley import logs

    logs.configure(component)


def _serve_metrics(settings: Settings, *, redis_gauges: bool = False) -> None:
    """A worker run alone serves its own /metrics when PARLEY_METRICS_PORT is set (ingest adds the Redis gauges)."""
    from parley.metrics import serve_worker

    serve_worker(settings, redis_gauges=redis_gauges)


@app.command()
def schema(out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None) -> None:
    """Print the JSON Schema of every command and event."""
    from parley.schema_export import json_schemas

    text = json.dumps(json_schemas(), indent=2)
    if out:
        out.write_text(text + "\n")
    else:
        typer.echo(text)


@app.command()
def submit(
    file: Annotated[str, typer.Argument(help="A JSON command, a JSON array of commands, or - for stdin.")],
) -> None:
    """Validate and enqueue commands; print each stream entry id."""
    from parley.producer import Producer
    from schemas.validation import Rejection

    text = sys.stdin.read() if file == "-" else Path(file).read_text()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        typer.echo(f"not valid JSON: {exc}", err=True)
        raise typer.Exit(1) from None
    commands = parsed if isinstance(parsed, list) else [parsed]
    producer = Producer(_client(), get_settings())
    failed = False
    for i, command in enumerate(commands):
        try:
            typer.echo(producer.submit(command))
        except Rejection as rejection:
            failed = True
            typer.echo(f"command {i} rejected: {rejection.reason}", err=True)
    raise typer.Exit(1 if failed else 0)


@app.command()
def events(
    since: Annotated[str, typer.Option(help="Stream id to start after: 0 for all, $ for new only.")] = "$",
    follow: Annotated[bool, typer.Option(help="Keep waiting for new events.")] = True,
) -> None:
    """Print events (one JSON per line) from parley:events."""
    client = _client()
    stream = get_settings().events_stream
    last = since
    while True:
        reply = client.xread({stream: last}, count=500, block=5000 if follow else None)
        if not reply:
            if not follow:
                return
            continue
        for entry_id, fields in reply[0][1]:
            last = entry_id
            typer.echo(fields.get("event", json.dumps(fields)))


@app.command()
def status(timeout: Annotated[float, typer.Option(help="Seconds to wait for a worker probe.")] = 10.0) -> None:
    """Exit 0 only when every component is up and consuming; show queue depths and dead letters."""
    from parley.app.status import collect

    result = collect(_client(), get_settings(), timeout)
    for c in result.components:
        typer.echo(f"{'up  ' if c.up else 'DOWN'}  {c.name:<14} {c.detail}")
    typer.echo(f"commands pending: {result.commands_pending}  lag: {result.commands_lag}  "
               f"celery queue: {result.celery_queue_depth}  guest commands: {result.guest_commands}  "
               f"dead letters: {result.dead_letters}")
    raise typer.Exit(0 if result.healthy else 1)


@dead_app.command("list")
def dead_list(count: int = 100) -> None:
    """List dead letters with their reasons."""
    from parley.deadletters import DeadLetters

    for entry in DeadLetters(_client(), get_settings()).list(count):
        letter = entry.letter
        typer.echo(f"{entry.entry_id}  {letter.stage:<7} {letter.command_type or '-':<16} {letter.reason}")


@dead_app.command("replay")
def dead_replay(entry_ids: list[str]) -> None:
    """Put dead-lettered commands back on the commands stream."""
    from parley.deadletters import DeadLetters
    from parley.records import Records

    client = _client()
    dead = DeadLetters(client, get_settings())
    records = Records(client, get_settings())
    for entry_id in entry_ids:
        entry = dead.get(entry_id)
        if entry is None:
            typer.echo(f"{entry_id}: no such dead letter", err=True)
            raise typer.Exit(1)
        if entry.letter.command_id:
            records.release_key_for_replay(entry.letter.command_id)
        typer.echo(f"{entry_id} -> {dead.replay(entry)}")


@app.command()
def ingest() -> None:
    """Run the ingestion worker (parley:commands -> Celery)."""
    from parley.connections import connect
    from tasks.app import app as celery_app
    from workers.ingest import IngestWorker

    settings = _worker_settings()
    _logging("ingest")
    _serve_metrics(settings, redis_gauges=True)
    worker = IngestWorker(connect(settings), settings, celery_app, reader=connect(settings, decode=False))
    worker.install_signal_handlers()
    worker.run()


@app.command()
def health(component: Annotated[str, typer.Argument(help="ingest, webhook, guest or celery")]) -> None:
    """Exit 0 if the COMPONENT running on this host consumes its input (for container health checks)."""
    from parley.app.health import check
    from parley.connections import connect

    if component not in ("ingest", "webhook", "guest", "celery"):
        typer.echo(f"unknown component {component!r}: ingest, webhook, guest or celery", err=True)
        raise typer.Exit(2)
    result = check(component, connect(_worker_settings()))  # type: ignore[arg-type]
    typer.echo(result.detail)
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def guest() -> None:
    """Run a guest worker (holds guest sessions' websockets; several may run side by side)."""
    from workers.guest.worker import main

    settings = _worker_settings()
    _logging("guest-worker")
    _serve_metrics(settings)
    raise typer.Exit(main(settings))


@app.command()
def webhook() -> None:
    """Run the webhook relay (parley:events -> PARLEY_WEBHOOK_URL, HMAC-SHA256 signed)."""
    import signal

    from parley.connections import connect
    from workers.webhook import WebhookRelay

    settings = _worker_settings()
    _logging("webhook-relay")
    _serve_metrics(settings)
    relay = WebhookRelay(connect(settings), settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: relay.stop_event.set())
    relay.run()


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def flower(ctx: typer.Context) -> None:
    """Run Flower for Parley's Celery app (options after it go to Flower); with PARLEY_FLOWER_BASIC_AUTH,
    every page, API call and /metrics need the password."""
    from parley.app.flower import main

    _logging("flower")
    main(get_settings(), ctx.args)


@app.command()
def emulator(
    host: Annotated[str | None, typer.Option(help="Bind address (default PARLEY_EMULATOR_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default PARLEY_EMULATOR_PORT).")] = None,
) -> None:
    """Run the Genesys Cloud emulator (REST and websockets) on loopback."""
    from emulator.app import serve

    settings = get_settings()
    serve(host or settings.emulator_host, port or settings.emulator_port)


@app.command()
def demo() -> None:
    """Run the five seed scenarios and one command of every other type against a running `parley run`."""
    from parley.app.demo import DemoError, run_demo, table

    try:
        rows = run_demo(_client(), get_settings())
    except DemoError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(table(rows))


@app.command()
def run() -> None:
    """Run the whole product on embedded defaults (Redis, emulator, workers, Flower)."""
    from parley.app.run import run as run_all

    _logging("run")
    run_all(get_settings())


def main() -> None:
    """The `parley` entry point: a bad setting is one sentence and exit code 2, never a traceback."""
    from parley.startup import settings_errors_exit

    with settings_errors_exit():
        app()


if __name__ == "__main__":
    main()
