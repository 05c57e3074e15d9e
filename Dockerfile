# One image for every Parley process; compose.yaml picks the command. Runs as an unprivileged user.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin parley
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY parley parley
COPY genesys genesys
COPY emulator emulator
COPY tasks tasks
COPY workers workers
COPY guest guest
# The otel extra is in the image so that PARLEY_OTEL_ENABLED=true in compose traces (README, Traces).
RUN pip install --no-cache-dir '.[otel]' && chown -R parley:parley /app
USER parley
# Celery's warm shutdown and the guest worker's handover both start on SIGTERM.
STOPSIGNAL SIGTERM
