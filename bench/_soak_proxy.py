"""A loopback proxy between the soak's applications and influxd.

Normally it relays bytes both ways, one upstream connection per client
connection, so that what influxd does reaches the applications unchanged:
a refused connection (influxd killed) closes the client's connection, a
frozen influxd leaves it hanging.  While a fault is set it answers every
request itself with that status (``Retry-After`` included) and closes the
connection; connections being relayed when the fault starts are cut, as a
load balancer that starts shedding load does.

It reads what it relays as HTTP/1.1 exchanges, one at a time per
connection, and keeps, for each write influxd answered with a 2xx, when
the answer went back, to which database and how many lines it held
(:attr:`FaultProxy.delivered`): the soak tells from it when the backlog an
outage caused was delivered.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
import urllib.parse
from collections import Counter


class FaultProxy:
    """Relay to ``127.0.0.1:upstream_port``, or answer an error status."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.answered: Counter[int] = Counter()
        #: ``(monotonic time, database, lines)`` of each write influxd
        #: answered with a 2xx, in the order the answers went back.
        self.delivered: list[tuple[float, str, int]] = []
        self._fault: tuple[int, dict[str, str]] | None = None
        self._relayed: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=self._run, name='soak-proxy', daemon=True
        )

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    def start(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def set_fault(self, status: int | None, retry_after: int = 1) -> None:
        """Answer *status* from now on (``None``: relay again)."""

        def apply() -> None:
            if status is None:
                self._fault = None
                return
            self._fault = (status, {'Retry-After': str(retry_after)})
            for writer in list(self._relayed):
                writer.transport.abort()

        self._loop.call_soon_threadsafe(apply)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, '127.0.0.1', 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            for writer in list(self._relayed):
                writer.transport.abort()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            if self._fault is not None:
                await self._answer(reader, writer, *self._fault)
            else:
                await self._relay(reader, writer)
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass
        finally:
            writer.transport.abort()

    async def _answer(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        status: int,
        headers: dict[str, str],
    ) -> None:
        head = await reader.readuntil(b'\r\n\r\n')
        length = 0
        for line in head.split(b'\r\n'):
            name, _, value = line.partition(b':')
            if name.strip().lower() == b'content-length':
                length = int(value)
        await reader.readexactly(length)
        body = json.dumps({'error': f'soak fault {status}'}).encode()
        lines = [
            f'HTTP/1.1 {status} Fault',
            'Content-Type: application/json',
            f'Content-Length: {len(body)}',
            'Connection: close',
            *(f'{name}: {value}' for name, value in headers.items()),
        ]
        writer.write('\r\n'.join(lines).encode() + b'\r\n\r\n' + body)
        await writer.drain()
        self.answered[status] += 1

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            '127.0.0.1', self.upstream_port
        )
        self._relayed.update((writer, upstream_writer))
        try:
            while True:
                try:
                    request = await _message(reader)
                except asyncio.IncompleteReadError:
                    return  # the client closed the connection
                upstream_writer.write(request.data)
                await upstream_writer.drain()
                response = await _message(upstream_reader)
                writer.write(response.data)
                await writer.drain()
                status = int(response.head[9:12])
                if 200 <= status < 300:
                    self._count(request)
                if response.close or request.close:
                    return
        finally:
            self._relayed.difference_update((writer, upstream_writer))
            upstream_writer.transport.abort()

    def _count(self, request: _Message) -> None:
        target = request.head.split(b' ', 2)[1].decode('latin-1')
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
        body = request.body
        if request.gzip:
            body = gzip.decompress(body)
        lines = body.count(b'\n') + 1 if body.strip() else 0
        database = query.get('db', query.get('bucket', ['']))[0]
        self.delivered.append((time.monotonic(), database, lines))


class _Message:
    """One HTTP/1.1 request or response, as read, and what it says."""

    __slots__ = ('body', 'close', 'data', 'gzip', 'head')

    def __init__(self, head: bytes, body: bytes, data: bytes) -> None:
        self.head = head
        self.body = body
        self.data = data
        lowered = head.lower()
        self.close = b'\r\nconnection: close' in lowered
        self.gzip = b'\r\ncontent-encoding: gzip' in lowered


async def _message(reader: asyncio.StreamReader) -> _Message:
    """Read one message (its body by Content-Length or chunked)."""
    head = await reader.readuntil(b'\r\n\r\n')
    lowered = head.lower()
    if b'\r\ntransfer-encoding: chunked' in lowered:
        raw = []
        chunks = []
        while True:
            line = await reader.readuntil(b'\r\n')
            raw.append(line)
            size = int(line.split(b';')[0], 16)
            chunk = await reader.readexactly(size + 2)
            raw.append(chunk)
            if size == 0:
                break
            chunks.append(chunk[:-2])
        body = b''.join(chunks)
        return _Message(head, body, head + b''.join(raw))
    length = 0
    for line in lowered.split(b'\r\n'):
        name, _, value = line.partition(b':')
        if name.strip() == b'content-length':
            length = int(value)
    body = await reader.readexactly(length) if length else b''
    return _Message(head, body, head + body)
