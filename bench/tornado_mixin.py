"""Tornado mixin overhead: what recording costs each request.

What is timed is a whole request over loopback, in microseconds: an HTTP/1.1
``GET /`` sent on a keep-alive connection to a Tornado server on
127.0.0.1, served by a handler that writes a small JSON dict, and its
response read back.  Three applications, identical but for the handler's
bases, are served by the same process:

* bare: ``class Handler(web.RequestHandler)``;
* historical: ``class Handler(InfluxDBMixin, web.RequestHandler)`` with
  sprockets-influxdb 2.2.1's mixin, installed with a huge trigger size and
  interval so that nothing is written.  Its mixin encodes the measurement in
  ``on_finish`` (on the request path); its module-level buffer is reset
  between rounds and each round stays under its buffer limit (25000);
* ours: ``class Handler(sprockets_influxdb.InfluxDBMixin,
  web.RequestHandler)``, with the default client installed with an
  unreachable local URL and a huge trigger size, interval and buffer size,
  so that nothing is written while it is timed (writing is the writer
  thread's job, not the request path's).  Its buffer is emptied between
  rounds, outside the timing, after checking that the round recorded every
  request.

Both mixins get the application settings ``sprockets_influxdb.database``
and ``service``; the three applications keep Tornado's defaults otherwise
(the access log included, at a level where it writes nothing).

The client runs in the server's own event loop, as a bare
:class:`asyncio.Protocol` on one keep-alive connection per application: it
sends pre-built request bytes, waits for the response (headers, then
``Content-Length`` bytes of body), checks its status and sends the next.
No second thread, so the figures do not depend on how two threads hand the
interpreter lock to each other (a blocking client in a thread gave a
spread of about +-30% per round, against a few percent); the client's own
cost is the same for every contender.

The contenders alternate round by round (the order rotates), each round
being a number of requests on the contender's connection.  The overhead of
a mixin is the median, over the rounds, of its time per request minus the
bare handler's in the same round.  Target (SPEC section 9): ours adds less
than the historical mixin; SPEC's aim, a fifth of it, is reported for
information.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from _common import (
    DATABASE,
    MEASUREMENT,
    alternate,
    describe_machine,
    load_historical,
    median,
    parse_args,
    spread,
    verdict,
)
from tornado import httpserver, netutil, web

import sprockets_influxdb

AIM = 5.0  # a fifth of the best competitor: informational
HUGE = 10**9
UNREACHABLE = 'http://127.0.0.1:9/write'  # discard port: nothing listens
REQUEST = b'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\n\r\n'
BODY = {'status': 'ok', 'service': MEASUREMENT, 'items': [1, 2, 3]}
SETTINGS = {'sprockets_influxdb.database': DATABASE, 'service': MEASUREMENT}


class BareHandler(web.RequestHandler):
    """The handler every contender serves, without a mixin."""

    def get(self) -> None:
        self.write(BODY)


class OursHandler(sprockets_influxdb.InfluxDBMixin, BareHandler):
    """The same handler with this library's mixin."""


def historical_handler(module: Any) -> type[web.RequestHandler]:
    """The same handler with sprockets-influxdb 2.2.1's mixin."""
    return type('HistoricalHandler', (module.InfluxDBMixin, BareHandler), {})


class Connection(asyncio.Protocol):
    """A keep-alive HTTP/1.1 client connection, one request at a time.

    It only finds where each response ends (headers, then
    ``Content-Length`` bytes of body) and checks the status line.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.received = bytearray()
        self.expected = -1
        self.lost: Exception | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionError('the server closed the connection')
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def data_received(self, data: bytes) -> None:
        received = self.received
        received += data
        if self.expected < 0:
            end = received.find(b'\r\n\r\n')
            if end < 0:
                return
            head = bytes(received[: end + 2]).lower()
            if not head.startswith(b'http/1.1 200 '):
                self.fail(f'unexpected response: {head[:60]!r}')
                return
            start = head.find(b'\r\ncontent-length:') + 17
            if start < 17:
                self.fail(f'no Content-Length: {head!r}')
                return
            length = int(head[start : head.index(b'\r\n', start)])
            self.expected = end + 4 + length
        if len(received) >= self.expected:
            if len(received) > self.expected:
                self.fail('more data than one response')
                return
            received.clear()
            self.expected = -1
            waiter = self.waiter
            if waiter is not None:
                waiter.set_result(None)

    def fail(self, message: str) -> None:
        """Make the pending request fail with *message*."""
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(RuntimeError(message))

    async def requests(self, number: int) -> float:
        """Send *number* requests one after the other.

        :returns: seconds per request
        """
        if self.lost is not None:
            raise self.lost
        transport = self.transport
        assert transport is not None
        loop = asyncio.get_running_loop()
        write = transport.write
        create_future = loop.create_future
        start = time.perf_counter()
        for _ in range(number):
            waiter = self.waiter = create_future()
            write(REQUEST)
            await waiter
        elapsed = time.perf_counter() - start
        self.waiter = None
        return elapsed / number


async def serve(handler: type[web.RequestHandler]) -> Connection:
    """Serve an application of *handler* on loopback and connect to it."""
    application = web.Application([(r'/', handler)], **SETTINGS)
    sockets = netutil.bind_sockets(0, '127.0.0.1')
    server = httpserver.HTTPServer(application)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(Connection, '127.0.0.1', port)
    return connection


def historical_reset(module: Any, number: int) -> Callable[[], None]:
    """Return what empties 2.2.1's buffer after a round of *number*."""

    def reset() -> None:
        assert module._buffer_size == number, module._buffer_size
        module._measurements.clear()
        module._buffer_size = 0

    return reset


def ours_check(number: int) -> Callable[[], None]:
    """Return what checks that a round of ours recorded *number* requests."""
    previous = sprockets_influxdb.stats().added

    def check() -> None:
        nonlocal previous
        added = sprockets_influxdb.stats().added
        assert added - previous == number, (added, previous)
        previous = added
        # Nothing is ever written: keep the buffer from growing, as the
        # writer would (the other middleware benchmarks do the same).
        sprockets_influxdb.default_client()._buffer.clear()

    return check


def measure(rounds: int, number: int) -> dict[str, list[float]]:
    """Serve the three applications and time them, round by round."""
    historical = load_historical()
    limit = historical._max_buffer_size
    if number >= limit:
        raise SystemExit(
            f'--number must stay under the historical buffer limit {limit}'
        )
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        historical.install(
            url=UNREACHABLE, submission_interval=HUGE, trigger_size=HUGE
        )
        sprockets_influxdb.install(
            url=UNREACHABLE,
            submission_interval=HUGE,
            trigger_size=HUGE,
            max_buffer_size=HUGE,
            shutdown_timeout=0,
        )
        handlers = {
            'bare': BareHandler,
            'historical': historical_handler(historical),
            'ours': OursHandler,
        }
        after: dict[str, Callable[[], None]] = {
            'bare': lambda: None,
            'historical': historical_reset(historical, number),
            'ours': ours_check(number),
        }
        connections = {
            name: loop.run_until_complete(serve(handler))
            for name, handler in handlers.items()
        }

        def contender(name: str) -> Callable[[], float]:
            connection = connections[name]

            def run() -> float:
                try:
                    return loop.run_until_complete(connection.requests(number))
                finally:
                    after[name]()

            return run

        contenders = {name: contender(name) for name in handlers}
        for run in contenders.values():  # warm up
            run()
        return alternate(contenders, rounds)
    finally:
        loop.run_until_complete(_stop(historical))
        loop.close()
        asyncio.set_event_loop(None)


async def _stop(historical: Any) -> None:
    historical._maybe_stop_timeout()
    # Drops what was recorded (nothing listens there), stops the writer.
    sprockets_influxdb.shutdown().result(timeout=30)


def overheads(results: dict[str, list[float]]) -> dict[str, float]:
    """The overhead of each mixin: median of its per-round differences.

    Each round, a mixin's time per request minus the bare handler's in the
    same round: the contenders of a round run within a second or two of
    each other, so slower and faster phases of a shared machine cancel out.
    """
    bare = results['bare']
    return {
        name: median([mixin - base for mixin, base in zip(values, bare)])
        for name, values in results.items()
        if name != 'bare'
    }


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], rounds=30, number=1500)
    # The default client is shut down with its measurements undelivered,
    # on purpose: do not warn about it.
    logging.getLogger('sprockets_influxdb').setLevel(logging.ERROR)
    print(f'tornado_mixin: {describe_machine()}')
    print(
        f'  {args.rounds} rounds of {args.number} requests per contender, '
        'one keep-alive connection each, over loopback'
    )
    results = measure(args.rounds, args.number)
    for name, values in results.items():
        print(
            f'  {name:16} median {median(values) * 1e6:.1f} us per request '
            f'(min/max {spread(values)})'
        )
    added = overheads(results)
    ours = added['ours']
    historical = added['historical']
    print(
        '  overhead over bare (median of the per-round differences): '
        f'historical {historical * 1e6:+.1f} us, ours {ours * 1e6:+.1f} us'
    )
    ratio = historical / ours if ours > 0 else float('inf')
    print(
        f'  aim, for information: a fifth of the historical overhead '
        f'({historical / AIM * 1e6:.1f} us); ours is {ratio:.1f}x less: '
        f'{"reached" if ratio >= AIM else "not reached"}'
    )
    print(
        f'tornado_mixin: overhead ours {ours * 1e6:+.1f} us, historical '
        f'{historical * 1e6:+.1f} us per request -> {ratio:.1f}x less '
        f'(target: less than historical): {verdict(ours < historical)}'
    )


if __name__ == '__main__':
    main()
