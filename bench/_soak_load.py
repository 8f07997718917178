"""The soak's load generator: an open-loop schedule, one process per app.

``bench/soak.py`` runs :func:`drive` in a process of its own for each
application.  It sends requests to the application with the library and
to the same application without it, at the same rate, alternating: the
i-th request of each goes out at ``start + i / rate``, the one to the
application without the library ``0.5 / rate`` later, both for the same
route, and which of the two comes first alternates from one pair to the
next.

The schedule is open: a request is sent when it is due whatever happened
to the earlier ones, on an idle kept-alive connection or a new one, so a
slow answer never delays the requests after it.  Its latency is counted
from when it was *due*, not from when it was sent, so that the generator
being late (its own CPU, the machine) counts against the figures rather
than hiding a stall ("coordinated omission").  How late it sent each
request is recorded apart, with the generator's CPU time, to show it is
not the bottleneck.

asyncio with protocols and a minimal HTTP/1.1 response parser rather
than ``http.client`` in threads: the generator's own CPU per request is a
few tens of microseconds, and no thread waits for the GIL between a
response arriving and its time being taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import resource
import time
from collections import deque
from typing import Any

# (name, path, weight); {n} is a number from 1 to 999.
ROUTES = [
    ('plain', '/', 45),
    ('parameter', '/items/{n}', 35),
    ('unrouted', '/no/such/page/{n}', 10),
    ('error', '/error', 5),
    ('stream', '/stream', 5),
]
#: The index of the streamed route (left out of the latency figures).
STREAM = 4
#: Connections open at most to each application: beyond, a request waits
#: for one to be free (its latency still counted from when it was due).
MAX_CONNECTIONS = 1000
REQUEST_TIMEOUT = 30.0

WITH, WITHOUT = 0, 1
#: Requests of each route sent to each application before the schedule,
#: all at once; their samples have :data:`WARM` as their due time.
WARM_UP = 10
WARM = -1.0

Sample = tuple[float, int, int, int, float, float]
"""``(due, target, route, status, latency, lag)``: when the request was
due (seconds from the start), to which application (:data:`WITH` or
:data:`WITHOUT` the library), its route (index in :data:`ROUTES`), the
status answered (0: no answer), seconds from due to the end of the answer,
and seconds from due to when the generator got to it (its own lateness)."""


def _response_end(data: bytearray) -> tuple[int, bool, int] | None:
    """Parse one HTTP/1.1 response at the start of *data*.

    :returns: ``(status, close, size)`` once it is complete, else ``None``
    """
    end = data.find(b'\r\n\r\n')
    if end < 0:
        return None
    head = bytes(data[:end]).lower()
    status = int(head[9:12])
    close = b'\r\nconnection: close' in head
    at = end + 4
    if b'\r\ntransfer-encoding: chunked' in head:
        while True:
            line_end = data.find(b'\r\n', at)
            if line_end < 0:
                return None
            size = int(bytes(data[at:line_end]).split(b';')[0], 16)
            at = line_end + 2
            if size == 0:
                # No trailers from these servers: the empty line ends it.
                if len(data) < at + 2:
                    return None
                return status, close, at + 2
            at += size + 2
            if len(data) < at:
                return None
    found = head.find(b'\r\ncontent-length:')
    length = 0
    if found >= 0:
        line_end = head.find(b'\r\n', found + 2)
        length = int(head[found + 17 : line_end if line_end >= 0 else None])
    if len(data) < at + length:
        return None
    return status, close, at + length


class _Connection(asyncio.Protocol):
    """One kept-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.data = bytearray()
        self.waiter: asyncio.Future[tuple[int, bool]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        parsed = _response_end(self.data)
        if parsed is not None:
            status, close, size = parsed
            del self.data[:size]
            waiter.set_result((status, close))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError('closed'))


def schedule(
    seed: int, rate: float, count: int
) -> list[tuple[float, int, int, int]]:
    """``(due, target, route, number)`` of every request, in time order.

    *count* requests to each application, in pairs for the same route.
    """
    rng = random.Random(seed)
    weights = [weight for _, _, weight in ROUTES]
    work = []
    for index in range(count):
        route = rng.choices(range(len(ROUTES)), weights)[0]
        number = rng.randint(1, 999)
        first, second = (WITH, WITHOUT) if index % 2 == 0 else (WITHOUT, WITH)
        work.append((index / rate, first, route, number))
        work.append(((index + 0.5) / rate, second, route, number))
    return work


async def _drive(plan: dict[str, Any]) -> list[Sample]:
    loop = asyncio.get_running_loop()
    ports = (plan['port'], plan['bare_port'])
    idle: tuple[list[_Connection], list[_Connection]] = ([], [])
    # Requests waiting for a connection, at MAX_CONNECTIONS.
    queued: tuple[deque[asyncio.Future[None]], ...] = (deque(), deque())
    opened = [0, 0]
    start = plan['start']
    results: list[Sample] = []

    def release(target: int, connection: _Connection | None) -> None:
        """Give back a connection (``None``: one closed)."""
        if connection is None:
            opened[target] -= 1
        else:
            idle[target].append(connection)
        waiting = queued[target]
        while waiting:
            future = waiting.popleft()
            if not future.done():
                future.set_result(None)
                break

    async def connect(target: int) -> tuple[_Connection | None, bool]:
        """An idle connection or a new one; whether it was kept alive."""
        while True:
            pool = idle[target]
            while pool:
                connection = pool.pop()
                if not connection.closed:
                    return connection, True
                opened[target] -= 1
            if opened[target] < MAX_CONNECTIONS:
                break
            future = loop.create_future()
            queued[target].append(future)
            await future
        opened[target] += 1
        try:
            _, connection = await loop.create_connection(
                _Connection, '127.0.0.1', ports[target]
            )
        except OSError:
            release(target, None)
            return None, False
        return connection, False

    async def exchange(target: int, path: bytes) -> int:
        """Send one request; return the status (0: no answer)."""
        for attempt in range(2):
            connection, reused = await connect(target)
            if connection is None:
                return 0
            assert connection.transport is not None
            connection.data.clear()
            waiter = connection.waiter = loop.create_future()
            connection.transport.write(
                b'GET ' + path + b' HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'
            )
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    status, close = await waiter
            except (OSError, TimeoutError, ValueError, IndexError):
                # A kept-alive connection the server had closed before it
                # read the request: sent again on a new one, as HTTP
                # clients do.
                stale = reused and not connection.data and attempt == 0
                connection.transport.abort()
                release(target, None)
                if stale:
                    continue
                return 0
            connection.waiter = None
            if close or connection.closed:
                connection.transport.close()
                release(target, None)
            else:
                release(target, connection)
            return status
        return 0

    async def one(due: float, target: int, route: int, number: int) -> None:
        began = loop.time()
        path = ROUTES[route][1].format(n=number).encode()
        status = await exchange(target, path)
        done = loop.time()
        results.append(
            (due, target, route, status, done - start - due,
             began - start - due)
        )  # fmt: skip

    async def warm(target: int, route: int, number: int) -> None:
        path = ROUTES[route][1].format(n=number).encode()
        status = await exchange(target, path)
        results.append((WARM, target, route, status, 0.0, 0.0))

    # Before the schedule: the first requests of a process import and
    # build what they need, and the library's writer starts.
    await asyncio.gather(*(
        warm(target, route, number)
        for target in (WITH, WITHOUT)
        for route in range(len(ROUTES))
        for number in range(1, WARM_UP + 1)
    ))  # fmt: skip
    tasks = []
    for due, target, route, number in schedule(
        plan['seed'], plan['rate'], plan['count']
    ):
        delay = start + due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(due, target, route, number)))
    await asyncio.gather(*tasks)
    for pool in idle:
        for connection in pool:
            if connection.transport is not None:
                connection.transport.close()
    return results


def drive(plan: dict[str, Any]) -> dict[str, Any]:
    """Run the load of *plan* (in a process of its own).

    :param plan: ``seed``, ``rate`` (requests/s to each application),
        ``count`` (requests to each), ``port`` and ``bare_port`` (with and
        without the library), ``start`` (the monotonic time of the first)
    :returns: ``samples`` (:data:`Sample` each), ``cpu`` (seconds of CPU
        the generator used while sending) and ``wall`` (seconds)
    """
    # With the scheduler's autogroups (Linux, sched_autogroup_enabled),
    # the CPU is shared out by session first: a session of its own, as each
    # app has, rather than a share of the soak's with the other generators,
    # influxd and the proxy.  And ahead of the other sessions of a shared
    # machine, so that the generator keeps its schedule (it takes a few %
    # of a core); where that is not allowed, as it is.
    with contextlib.suppress(OSError):
        os.setsid()
    with (
        contextlib.suppress(OSError),
        open('/proc/self/autogroup', 'w') as handle,
    ):
        handle.write('-5')
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, -5)
    before = resource.getrusage(resource.RUSAGE_SELF)
    began = time.monotonic()
    samples = asyncio.run(_drive(plan))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (
        after.ru_stime - before.ru_stime
    )
    return {
        'samples': samples,
        'cpu': cpu,
        'wall': time.monotonic() - max(began, plan['start']),
    }
