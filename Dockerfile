# One image for every Parley process; compose.yaml picks the command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY parley parley
COPY genesys genesys
COPY emulator emulator
COPY tasks tasks
COPY workers workers
COPY guest guest
RUN pip install --no-cache-dir .
USER nobody
