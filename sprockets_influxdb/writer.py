"""Background delivery: batching, retries and lifecycle, in a thread.

The :class:`Writer` owns one daemon thread running an anyio event loop (the
asyncio backend); it posts through a
:class:`~sprockets_influxdb.transport.Transport` (HTTP/1.1, h11), as the
server's write API says (:mod:`sprockets_influxdb.write_api`: the URL,
parameters, authorization and how to read errors).  It is started lazily
by the first measurement, so importing the library or configuring it never
starts a thread, and the application's own event loop (Tornado, asyncio,
trio) or the lack of one (WSGI, plain threads) makes no difference to it.

Responses are handled as follows:

* 2xx: delivered.
* 400 (a "partial write" stores the good lines): the lines the server
  names are settled from its answer, the others counted as written or
  sent again as the API says; otherwise the batch is halved
  and the halves sent again, breadth first and within a budget of requests
  and of bytes sent again, so that only lines rejected on their own are
  dropped, each logged with the server's message.  Resending good lines is
  harmless but costs bytes: a point with the same measurement, tags and
  time is the same point.
* 413: halved and sent again; a single line the server still refuses is
  dropped and logged.
* 429, 5xx, timeouts and connection errors, and 401, 403, 404 (credentials
  or a database that do not exist yet): the lines go back to the head of
  their queue and are tried again after an exponential backoff with full
  jitter, at least as long as any ``Retry-After``; intake continues.

``request_timeout`` is a deadline for the whole request, and no more than
a bounded prefix of any answer's body is read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import itertools
import logging
import math
import os
import random
import threading
import time
import traceback
from collections import deque
from itertools import islice, repeat
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from sprockets_influxdb import _imports, line_protocol, stop_signals
from sprockets_influxdb._logging import INTERVAL as _LOG_INTERVAL
from sprockets_influxdb._logging import Throttle, shorten
from sprockets_influxdb.buffer import ENTRY_SIZE, Buffer
from sprockets_influxdb.measurement import _compiled
from sprockets_influxdb.transport import (
    USER_AGENT,
    RetryError,
    Transport,
    retry_after,
)
from sprockets_influxdb.write_api import Rejection, by_name

if TYPE_CHECKING:
    from sprockets_influxdb.config import Settings

__all__ = ['USER_AGENT', 'Counters', 'Writer']

LOGGER = logging.getLogger('sprockets_influxdb')


# Before any writer thread exists: see _imports.
_imports.import_eagerly()

# Rejected lines logged one by one per batch; the others are summed up.
_LOGGED_LINES = 10
# Entries encoded between two turns of the event loop (a few milliseconds).
_ENCODE_SLICE = 5000
# The compiled join of lines into a body, when built.
_join_lines = None if _compiled is None else _compiled.join_lines


def _body(lines: list[str]) -> bytes:
    """The body of a request: the lines, one per line, in UTF-8."""
    if _join_lines is not None:
        body: bytes | None = _join_lines(lines)
        if body is not None:
            return body
    return '\n'.join(lines).encode('utf-8')


class _Batch:
    """Encoded lines of one database, with their sequence numbers.

    All written at one precision, that of :attr:`precision`.
    """

    __slots__ = ('lines', 'precision', 'sequences')

    def __init__(
        self, sequences: list[int], lines: list[str], precision: str
    ) -> None:
        self.sequences = sequences
        self.lines = lines
        self.precision = precision

    def __len__(self) -> int:
        return len(self.lines)

    def size(self) -> int:
        """The size of the body, about (characters, not bytes)."""
        return sum(map(len, self.lines)) + len(self.lines)

    def part(self, indexes: list[int]) -> _Batch:
        """The lines at *indexes*, in their order."""
        return _Batch(
            [self.sequences[index] for index in indexes],
            [self.lines[index] for index in indexes],
            self.precision,
        )

    def halves(self) -> tuple[_Batch, _Batch]:
        middle = len(self.lines) // 2
        return (
            _Batch(
                self.sequences[:middle], self.lines[:middle], self.precision
            ),
            _Batch(
                self.sequences[middle:], self.lines[middle:], self.precision
            ),
        )


def _rescale(lines: list[str], old: str, new: str) -> list[str]:
    """Convert the timestamps of lines from one precision to another.

    Truncated toward zero, as the encoder does.
    """
    factor_old = line_protocol.NANOSECONDS[old]
    factor_new = line_protocol.NANOSECONDS[new]
    converted = []
    for line in lines:
        head, _, stamp = line.rpartition(' ')
        nanoseconds = int(stamp) * factor_old
        if nanoseconds >= 0:
            number = nanoseconds // factor_new
        else:
            number = -(-nanoseconds // factor_new)
        converted.append(f'{head} {number}')
    return converted


class Counters:
    """The mutable counters behind :func:`~sprockets_influxdb.stats`."""

    def __init__(self) -> None:
        self.written = 0
        self.dropped: dict[str, int] = {
            'overflow': 0,
            'rejected': 0,
            'shutdown': 0,
            'sampled': 0,
            'invalid': 0,
            'collision': 0,
        }
        self.retries = 0
        self.requests = 0
        self.failed_requests = 0
        self.last_error: str | None = None
        self.in_flight = 0
        self.backlog = 0
        #: Measurements encoded, by encoder.
        self.encoded: dict[str, int] = {'compiled': 0, 'python': 0}


class _Target:
    """Everything the writer keeps for one database."""

    __slots__ = (
        'attempts',
        'database',
        'last_times',
        'lines',
        'log_after',
        'retry_at',
        'sequences',
    )

    def __init__(self, database: str) -> None:
        self.database = database
        # The encoded lines waiting, oldest first, and their sequence
        # numbers: two deques rather than one of pairs, so that encoding
        # creates no object for the garbage collector to track.
        self.sequences: deque[int] = deque()
        self.lines: deque[str] = deque()
        self.retry_at = 0.0
        self.attempts = 0
        self.log_after = 0.0
        # The last time written of each series, to keep points apart.
        self.last_times: dict[str, list[int]] = {}


class _Delivery:
    """The state of one batch being delivered, possibly split.

    Finding the lines a server refused without naming them costs requests
    and bytes sent again: both are budgeted.
    """

    __slots__ = (
        '_batch',
        '_resend',
        'budget',
        'done',
        'last_reason',
        'logged',
    )

    def __init__(self, batch: _Batch) -> None:
        # Each halving costs two requests at most; this allows isolating a
        # handful of bad lines in any batch without ever sending one request
        # per line.
        self.budget = 8 * max(1, math.ceil(math.log2(len(batch) + 1)))
        # Measured when first needed: most batches are simply delivered.
        self._batch = batch
        self._resend: int | None = None
        self.done: set[int] = set()
        self.logged = 0
        self.last_reason = ''

    def affords(
        self, requests: int, batch: _Batch, stored: bool = True
    ) -> bool:
        """Whether *requests* requests sending *batch* are within budget.

        :param stored: whether the server stored the good lines of
            *batch* already (resending them costs bytes)
        """
        if self.budget < requests:
            return False
        return not stored or self.resend >= batch.size()

    @property
    def resend(self) -> int:
        """Bytes (about) that may still be sent again."""
        if self._resend is None:
            # A partial write stores the good lines of a body: sending
            # them again stores the same points again, so only costs bytes.
            self._resend = 2 * self._batch.size()
        return self._resend

    @resend.setter
    def resend(self, value: int) -> None:
        self._resend = value

    def charge(
        self, requests: int, batch: _Batch, stored: bool = True
    ) -> None:
        """Take *requests* requests sending *batch* from the budget."""
        self.budget -= requests
        if stored:
            self.resend -= batch.size()

    def refund(self, batch: _Batch, stored: bool = True) -> None:
        """Give back a request sending *batch* charged but not made."""
        self.budget += 1
        if stored:
            self.resend += batch.size()


class _Waiter:
    """A flush or shutdown waiting for a sequence number to be resolved.

    An impatient one gives up as soon as a connection to a server that was
    never reached has failed after it began waiting.
    """

    __slots__ = ('deadline', 'failures', 'future', 'patient', 'sequence')

    def __init__(
        self,
        sequence: int,
        deadline: float,
        future: concurrent.futures.Future[bool],
        patient: bool = True,
        failures: int = 0,
    ) -> None:
        self.sequence = sequence
        self.deadline = deadline
        self.future = future
        self.patient = patient
        self.failures = failures


class Writer:
    """Delivers what a :class:`~sprockets_influxdb.buffer.Buffer` holds.

    :param buffer: the intake buffer to take measurements from
    :param counters: where to count what happens
    :param settings: the initial settings (see :meth:`configure`)
    :param base_tags: tags added to every measurement that lacks them
    """

    def __init__(
        self,
        buffer: Buffer,
        counters: Counters,
        settings: Settings,
        base_tags: bool = True,
    ) -> None:
        self._buffer = buffer
        self._counters = counters
        self._settings = settings
        self._merge_base_tags = base_tags
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._targets: dict[str, _Target] = {}
        # Entries taken from the buffer and not encoded yet, flat, from
        # index _raw_at on; all of them newer than any encoded line.
        self._raw: list[Any] = []
        self._raw_at = 0
        # The precision of the encoded lines held in the targets' deques.
        self._lines_precision = settings.precision
        self._in_flight: dict[int, int] = {}
        self._batch_ids = itertools.count()
        self._waiters: list[_Waiter] = []
        self._force = False
        self._stopping: _Waiter | None = None
        self._stopped = threading.Event()
        self._body_limit = settings.max_body_size
        self._transport = Transport(counters)
        self._overflow_unreported = 0
        self._overflow_reported_at = -_LOG_INTERVAL
        self._collision_log = Throttle()
        self._invalid_log = Throttle()
        self._compiled_log = Throttle()
        # Whether any server answered yet, and how many connections failed
        # before one did.
        self._reached = False
        #: Measurements dropped when the writer stopped.
        self.lost_at_stop = 0
        # Until when a stop signal has the writer send promptly.
        self._hurry_until = -1.0
        # Set by a stop signal: take the buffer and cut backoff once.
        self._hurried = False
        stop_signals.tell(self)
        stop_signals.watch()

    # Called from any thread -------------------------------------------------

    def configure(self, settings: Settings) -> None:
        """Use new settings from the next request on.

        :param settings: the new settings
        """
        # A new precision is applied by the writer thread (see _serve).
        self._settings = settings
        self._body_limit = settings.max_body_size
        # Configuring never starts the thread (a gunicorn --preload master
        # must fork without one); a running writer looks again at once.
        if self._thread is not None and self._pid == os.getpid():
            self.wake()

    def wake(self) -> None:
        """Make the writer look at the buffer now, starting it if needed."""
        loop = self._loop
        if loop is None or self._thread is None or self._pid != os.getpid():
            self._start()
            return
        # A closed loop raises RuntimeError: the writer has stopped for good.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._on_wake)

    def hurry(self) -> None:
        """Send what is buffered now, and what comes for a while.

        A backoff wait is cut short, once.  For
        :data:`~sprockets_influxdb.stop_signals.HURRY_SECONDS`, the
        submission interval is at most
        :data:`~sprockets_influxdb.stop_signals.HURRY_INTERVAL`.  Called
        in a signal handler: it takes no lock and starts no thread.
        """
        if self._pid != os.getpid():
            return
        self._hurry_until = time.monotonic() + stop_signals.HURRY_SECONDS
        self._hurried = True
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_wake)

    def flush(
        self, timeout: float, patient: bool = True
    ) -> concurrent.futures.Future[bool]:
        """Resolve when everything accepted so far is delivered or dropped.

        Any backoff wait is cut short.

        :param timeout: seconds before the future resolves ``False``
        :param patient: wait for *timeout* even when no server was ever
            reached and connections are refused
        :returns: a future resolving ``True`` on full delivery
        """
        future: concurrent.futures.Future[bool] = concurrent.futures.Future()
        sequence = self._buffer.last_sequence
        waiter = _Waiter(
            sequence,
            time.monotonic() + timeout,
            future,
            patient,
            self._transport.connect_failures,
        )
        with self._lock:
            idle = self._thread is None or self._pid != os.getpid()
            empty = not len(self._buffer) and not self._counters.backlog
            if self._stopped.is_set() or (idle and empty):
                # Stopped, nothing will be delivered any more.
                future.set_result(empty)
                return future
            self._waiters.append(waiter)
            self._force = True
        self.wake()
        return future

    def stop(self, timeout: float) -> concurrent.futures.Future[bool]:
        """Deliver what can be delivered within *timeout*, then stop.

        What is still pending at the deadline is dropped and counted as
        ``shutdown`` (:attr:`lost_at_stop`).  When no server was ever
        reached and a connection fails, it stops without waiting for the
        deadline: there is nobody to wait for.

        :param timeout: seconds to keep trying
        :returns: a future resolving ``True`` when nothing was lost
        """
        future: concurrent.futures.Future[bool] = concurrent.futures.Future()
        with self._lock:
            if self._stopping is not None:
                return self._stopping.future
            self._stopping = _Waiter(
                self._buffer.last_sequence,
                time.monotonic() + timeout,
                future,
                False,
                self._transport.connect_failures,
            )
            self._force = True
            started = self._thread is not None and self._pid == os.getpid()
        if not started:
            if len(self._buffer) or self._counters.backlog:
                self.wake()
            else:
                self._stopped.set()
                future.set_result(True)
                return future
        self.wake()
        return future

    @property
    def stopped(self) -> bool:
        """Whether the writer has stopped for good."""
        return self._stopped.is_set()

    def _start(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                return
            if self._thread is not None or self._stopped.is_set():
                return
            self._thread = threading.Thread(
                target=self._run,
                name='sprockets-influxdb-writer',
                daemon=True,
            )
            self._thread.start()
        stop_signals.watch()

    # The writer thread ------------------------------------------------------

    def _run(self) -> None:
        try:
            anyio.run(self._main, backend='asyncio')
        except BaseException:  # pragma: no cover - a bug, made visible
            LOGGER.exception('The InfluxDB writer stopped unexpectedly')
        finally:
            self._loop = None
            self._finish_stop()

    def _on_wake(self) -> None:
        if self._event is not None:
            self._event.set()

    async def _main(self) -> None:
        # The writer's loop is asyncio's (anyio.run's backend): its own
        # event and timer cost a fraction of anyio's Event and cancel scope
        # each time the writer waits.
        self._event = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        try:
            async with anyio.create_task_group() as tasks:
                await self._serve(tasks)
                tasks.cancel_scope.cancel()
        finally:
            await self._transport.aclose()

    async def _serve(self, tasks: anyio.abc.TaskGroup) -> None:
        while True:
            now = time.monotonic()
            settings = self._settings
            stopping = self._stopping
            with self._lock:
                force = self._force
                self._force = False
            if self._hurried:
                self._hurried = False
                force = True
            if settings.precision != self._lines_precision:
                self._change_precision(settings.precision)
            interval = settings.submission_interval / 1000
            if now < self._hurry_until:
                interval = min(interval, stop_signals.HURRY_INTERVAL)
            if (
                force
                or stopping is not None
                or (
                    self._raw_at >= len(self._raw)
                    and self._buffer.due(interval, now)
                )
            ):
                self._take_buffer(settings)
            # Encode a slice at a time and let the event loop run in
            # between: requests in flight progress while the rest is
            # encoded.  Until all is encoded, only full batches leave: a
            # request per slice would multiply the requests.
            draining = self._encode_slice(settings) > 0
            self._dispatch(tasks, settings, now, force, whole=not draining)
            self._resolve_waiters(now)
            if stopping is not None:
                if self._outstanding() is None:
                    return
                if now >= stopping.deadline or self._unreachable(stopping):
                    return
            if draining:
                await anyio.sleep(0)
                continue
            deadline = self._next_deadline(settings, now, interval)
            event, loop = self._event, self._loop
            assert event is not None
            assert loop is not None
            if not event.is_set():  # (a wake during the work above)
                timer = loop.call_later(max(deadline - now, 0), event.set)
                try:
                    await event.wait()
                finally:
                    timer.cancel()
            event.clear()

    def _where(self, target: _Target) -> str:
        """Where the lines of *target* go, for log lines."""
        settings = self._settings
        return by_name(settings.api).where(settings, target.database)

    def _unreachable(self, waiter: _Waiter) -> bool:
        """Whether an impatient waiter should give up.

        It does when no server was ever reached and a connection failed
        since it began waiting.
        """
        return (
            not waiter.patient
            and not self._reached
            and self._transport.connect_failures > waiter.failures
        )

    def _change_precision(self, precision: str) -> None:
        """Convert the lines waiting to a new precision.

        The runs of times written are forgotten: they were at the old one.
        """
        old = self._lines_precision
        for target in self._targets.values():
            target.lines = deque(_rescale(list(target.lines), old, precision))
            target.last_times.clear()
        self._lines_precision = precision

    def _next_deadline(
        self, settings: Settings, now: float, interval: float
    ) -> float:
        deadlines = [now + 3600.0]
        since = self._buffer.since
        if since is not None:
            deadlines.append(since + interval)
        free = len(self._in_flight) < settings.max_clients
        for target in self._targets.values():
            if target.lines and free:
                deadlines.append(target.retry_at)
        deadlines.extend(waiter.deadline for waiter in self._waiters)
        if self._stopping is not None:
            deadlines.append(self._stopping.deadline)
        return min(deadlines)

    def _take_buffer(self, settings: Settings) -> None:
        """Take everything buffered, to be encoded a slice at a time."""
        taken = self._buffer.take()
        if not taken:
            return
        if self._raw_at < len(self._raw):
            self._raw = [*self._raw[self._raw_at :], *taken]
        else:
            self._raw = list(taken)
        self._raw_at = 0
        self._counters.backlog += len(taken) // ENTRY_SIZE
        self._trim(settings.max_buffer_size)

    def _encode_slice(self, settings: Settings) -> int:
        """Encode the next slice of what was taken; return how many remain."""
        raw = self._raw
        start = self._raw_at
        end = min(len(raw), start + _ENCODE_SLICE * ENTRY_SIZE)
        if start >= end:
            return 0
        chunk = raw[start:end]
        if end < len(raw):
            self._raw_at = end
        else:
            self._raw = []
            self._raw_at = 0
        precision = settings.precision
        unique = settings.unique_timestamps
        base_tags = settings.base_tags if self._merge_base_tags else None
        targets = self._targets
        # What is encoded goes to a pair of lists per database, then to
        # the database's deques at once.
        outputs: dict[str, list[Any]] = {
            database: [[], [], target.last_times if unique else None]
            for database, target in targets.items()
        }
        fast = line_protocol.fast_slice
        encoded = self._counters.encoded
        at = 0
        stop = len(chunk)
        while at < stop:
            if fast is not None:
                begin = at
                before = sum([len(output[0]) for output in outputs.values()])
                try:
                    at = fast(chunk, at, stop, precision, base_tags, outputs)
                except Exception as error:
                    # Something in the entry it stopped at (a tag value
                    # whose hash raises, say) or a bug: what it encoded
                    # stands, that entry goes to Python, which encodes it
                    # or drops it with a reason, and the next entries are
                    # compiled again.  One bad entry costs only itself.
                    done = sum([len(output[0]) for output in outputs.values()])
                    at = begin + (done - before) * ENTRY_SIZE
                    encoded['compiled'] += done - before
                    entry = chunk[at : at + ENTRY_SIZE]
                    if self._encode_one(entry, settings, outputs):
                        # Python encoded what the compiled path could not.
                        self._report_compiled_failure(entry, error)
                    at += ENTRY_SIZE
                    continue
                encoded['compiled'] += (at - begin) // ENTRY_SIZE
                if at >= stop:
                    break
            # An entry the compiled fast path leaves (or no fast path).
            self._encode_one(chunk[at : at + ENTRY_SIZE], settings, outputs)
            at += ENTRY_SIZE
        for database, (sequences, lines, _) in outputs.items():
            if sequences:
                target = targets[database]
                target.sequences.extend(sequences)
                target.lines.extend(lines)
        return (len(raw) - end) // ENTRY_SIZE

    def _encode_one(
        self,
        entry: list[Any],
        settings: Settings,
        outputs: dict[str, list[Any]],
    ) -> bool:
        """Encode one entry in Python; whether it was (else it is dropped)."""
        sequence, database, name, tags, fields, when = entry
        if self._merge_base_tags and settings.base_tags:
            tags = {**settings.base_tags, **tags}
        output = outputs.get(database)
        if output is None:
            target = self._targets.get(database)
            if target is None:
                target = self._targets[database] = _Target(database)
            last = target.last_times if settings.unique_timestamps else None
            output = outputs[database] = [[], [], last]
        try:
            # The compiled path has left this one (or there is none).
            line = line_protocol.encode_python(
                name, tags, fields, when, settings.precision, output[2]
            )
        except line_protocol.CollisionError as error:
            self._counters.backlog -= 1
            self._counters.dropped['collision'] += 1
            self._report_drop(
                'would have replaced another point of its series',
                self._collision_log,
                name,
                database,
                error,
            )
            return False
        except Exception as error:
            self._counters.backlog -= 1
            self._counters.dropped['invalid'] += 1
            self._report_drop(
                'cannot be written', self._invalid_log, name, database, error
            )
            return False
        output[0].append(sequence)
        output[1].append(line)
        self._counters.encoded['python'] += 1
        return True

    def _report_compiled_failure(
        self, entry: list[Any], error: Exception
    ) -> None:
        """Log that the compiled encoder failed where Python did not.

        A bug of the compiled encoder: the entry was written all the same.
        """
        more = self._compiled_log.allow()
        if more is not None:
            LOGGER.error(
                'The compiled encoder failed on a measurement %s for '
                'database %s that Python encoded (%s: %s); please report '
                'it%s',
                shorten(repr(entry[2]), 100),
                shorten(repr(entry[1]), 100),
                type(error).__name__,
                shorten(str(error), 300),
                more,
            )

    def _report_drop(
        self,
        reason: str,
        throttle: Throttle,
        name: str,
        database: str,
        error: Exception,
    ) -> None:
        """Log a measurement the writer dropped (throttled per reason).

        Its values may come from the application's clients.
        """
        more = throttle.allow()
        if more is not None:
            LOGGER.error(
                'Dropped a measurement %s for database %s that %s: %s%s',
                shorten(repr(name), 100),
                shorten(repr(database), 100),
                reason,
                shorten(str(error), 300),
                more,
            )

    def _trim(self, limit: int) -> None:
        """Drop the oldest lines and entries held beyond *limit*."""
        counters = self._counters
        excess = counters.backlog - limit
        if excess <= 0:
            return
        dropped = 0
        for _ in range(excess):
            oldest: _Target | None = None
            for target in self._targets.values():
                if target.sequences and (
                    oldest is None or target.sequences[0] < oldest.sequences[0]
                ):
                    oldest = target
            if oldest is None:
                break
            oldest.sequences.popleft()
            oldest.lines.popleft()
            dropped += 1
        if dropped < excess:
            # What is not encoded yet is newer than every encoded line.
            raw_left = (len(self._raw) - self._raw_at) // ENTRY_SIZE
            skipped = min(excess - dropped, raw_left)
            self._raw_at += skipped * ENTRY_SIZE
            dropped += skipped
        counters.backlog -= dropped
        counters.dropped['overflow'] += dropped
        self._overflow_unreported += dropped
        now = time.monotonic()
        if now - self._overflow_reported_at >= _LOG_INTERVAL:
            LOGGER.warning(
                'The buffer is full (%d measurements): dropped the %d '
                'oldest since the last warning',
                limit,
                self._overflow_unreported,
            )
            self._overflow_reported_at = now
            self._overflow_unreported = 0

    def _dispatch(
        self,
        tasks: anyio.abc.TaskGroup,
        settings: Settings,
        now: float,
        force: bool,
        whole: bool = True,
    ) -> None:
        # Requests in flight are bounded here, by counting them.
        busy = len(self._in_flight)
        least = 1 if whole else settings.max_batch_size
        for target in list(self._targets.values()):
            if force:
                target.retry_at = 0.0
            while (
                len(target.lines) >= least
                and target.retry_at <= now
                and busy < settings.max_clients
            ):
                batch = self._next_batch(target, settings.max_batch_size)
                batch_id = next(self._batch_ids)
                self._in_flight[batch_id] = batch.sequences[0]  # sorted
                self._counters.in_flight += len(batch)
                busy += 1
                tasks.start_soon(self._deliver, target, batch, batch_id)

    def _next_batch(self, target: _Target, max_lines: int) -> _Batch:
        waiting = target.lines
        count = min(len(waiting), max_lines)
        if count == len(waiting):
            batch = _Batch(
                list(target.sequences), list(waiting), self._lines_precision
            )
            target.sequences.clear()
            waiting.clear()
        else:
            batch = _Batch(
                list(islice(target.sequences, count)),
                list(islice(waiting, count)),
                self._lines_precision,
            )
            for pop in (target.sequences.popleft, waiting.popleft):
                for _ in repeat(None, count):
                    pop()
        limit = self._body_limit
        lines = batch.lines
        # Lines are text: their length is a close estimate of the body
        # size; _send splits a body that still comes out too large.
        if sum(map(len, lines)) + len(lines) > limit:
            size = 0
            for index, line in enumerate(lines):
                size += len(line) + 1
                if size > limit and index > 0:
                    target.sequences.extendleft(
                        reversed(batch.sequences[index:])
                    )
                    waiting.extendleft(reversed(lines[index:]))
                    del batch.sequences[index:], lines[index:]
                    break
        self._counters.backlog -= len(lines)
        return batch

    async def _deliver(
        self, target: _Target, batch: _Batch, batch_id: int
    ) -> None:
        delivery = _Delivery(batch)
        try:
            await self._send(target, batch, delivery)
            target.attempts = 0
        except RetryError as retry:
            self._requeue(target, batch, delivery)
            self._back_off(target, retry)
        except Exception as error:  # a bug: keep the data, make it visible
            settings = self._settings
            trace = settings.redact(
                ''.join(
                    traceback.format_exception(
                        type(error), error, error.__traceback__
                    )
                ).rstrip()
            )
            LOGGER.error('Unexpected error writing to InfluxDB:\n%s', trace)
            self._requeue(target, batch, delivery)
            self._back_off(
                target, RetryError(settings.redact(repr(error)), error=True)
            )
        except BaseException:
            # Cancelled at the end of a shutdown: put the lines back so that
            # they are counted as not delivered.
            self._requeue(target, batch, delivery)
            raise
        finally:
            del self._in_flight[batch_id]
            self._counters.in_flight -= len(batch)
            if delivery.logged > _LOGGED_LINES:
                LOGGER.error(
                    'InfluxDB rejected %d more lines for %s (the last: %s)',
                    delivery.logged - _LOGGED_LINES,
                    self._where(target),
                    delivery.last_reason,
                )
            self._on_wake()

    def _requeue(
        self, target: _Target, batch: _Batch, delivery: _Delivery
    ) -> None:
        """Put the unresolved lines of a batch back at the head, in order."""
        done = delivery.done
        sequences, lines = batch.sequences, batch.lines
        if batch.precision != self._lines_precision:
            # Sent at the old precision and failed: the others are at the
            # new one by now.
            lines = _rescale(lines, batch.precision, self._lines_precision)
        if done:
            kept = [
                index
                for index, sequence in enumerate(sequences)
                if sequence not in done
            ]
            sequences = [sequences[index] for index in kept]
            lines = [lines[index] for index in kept]
        if not sequences:
            return
        if not target.sequences or sequences[-1] < target.sequences[0]:
            target.sequences.extendleft(reversed(sequences))
            target.lines.extendleft(reversed(lines))
        else:
            merged = list(
                heapq.merge(
                    zip(sequences, lines),
                    zip(target.sequences, target.lines),
                )
            )
            target.sequences = deque(sequence for sequence, _ in merged)
            target.lines = deque(line for _, line in merged)
        self._counters.backlog += len(sequences)
        self._trim(self._settings.max_buffer_size)

    def _back_off(self, target: _Target, retry: RetryError) -> None:
        """Wait before the next request to this database, and say so."""
        counters = self._counters
        counters.retries += 1
        counters.last_error = str(retry)
        settings = self._settings
        target.attempts += 1
        ceiling = min(
            settings.backoff_max,
            settings.backoff_base * 2 ** min(target.attempts, 30),
        )
        delay = max(random.uniform(0, ceiling), retry.retry_after)
        now = time.monotonic()
        target.retry_at = now + delay
        if now >= target.log_after:
            target.log_after = now + max(delay, _LOG_INTERVAL)
            log = LOGGER.error if retry.error else LOGGER.warning
            log(
                'Writing to %s failed (%s); keeping %d '
                'measurements and retrying in %.1f s',
                self._where(target),
                retry,
                len(target.lines),
                delay,
            )

    async def _send(
        self, target: _Target, batch: _Batch, delivery: _Delivery
    ) -> None:
        """Send lines and settle each of them, written or rejected.

        :raises RetryError: for an answer or error worth retrying
        """
        rejection = await self._attempt(target, batch, delivery)
        if isinstance(rejection, Rejection):
            await self._resolve(target, batch, delivery, rejection)

    async def _attempt(
        self, target: _Target, batch: _Batch, delivery: _Delivery
    ) -> Rejection | bool:
        """Send lines once and settle what the answer settles.

        :returns: ``True`` when the server took them all, what it said
            when it refused some (400), else ``False`` (settled otherwise)
        :raises RetryError: for an answer or error worth retrying
        """
        settings = self._settings
        body = _body(batch.lines)
        if len(body) > self._body_limit and len(batch) > 1:
            for half in batch.halves():
                await self._send(target, half, delivery)
            return False
        answer = await self._transport.post(
            settings, target.database, body, batch.precision, len(batch)
        )
        self._reached = True
        status = answer.status
        counters = self._counters
        if 200 <= status < 300:
            self._settle(batch, delivery)
            return True
        counters.failed_requests += 1
        api = by_name(settings.api)
        message, whole = api.message(answer)
        if status in api.rejections:
            counters.last_error = f'{status}: {shorten(message, 500)}'
            return api.rejection(answer, message, whole, batch.lines)
        if status == 413:
            counters.last_error = f'413: {shorten(message, 500)}'
            if len(batch) == 1:
                self._refuse(
                    target, batch, delivery, {0: message}, 'too large'
                )
                return False
            self._body_limit = max(1024, min(self._body_limit, len(body) // 2))
            for half in batch.halves():
                delivery.budget -= 1
                await self._send(target, half, delivery)
            return False
        raise RetryError(
            f'HTTP {status}: {shorten(message, 500)}',
            retry_after=retry_after(answer.headers.get('retry-after')),
            error=400 <= status < 500 and status != 429,
        )

    async def _resolve(
        self,
        target: _Target,
        batch: _Batch,
        delivery: _Delivery,
        rejection: Rejection,
    ) -> None:
        """Settle the lines of a batch the server refused some of (400).

        The lines the server names are settled from its answer alone.
        Otherwise the batch is halved and the halves sent again (the
        second half is not sent when the first goes through: it holds
        what was refused), breadth first and within the delivery's
        budget; when the budget is spent, what is left is counted as the
        server said.
        """
        pending = deque([(batch, rejection)])
        while pending:
            batch, rejection = pending.popleft()
            if rejection.through:
                rest = self._settle_named(target, batch, delivery, rejection)
                if rest is None:
                    continue
                # The server's answer was longer than what was read: ask
                # about the lines it did not get to.
                if not delivery.affords(1, rest):
                    # How many of the rest it refused is not known.
                    self._give_up(
                        target,
                        rest,
                        delivery,
                        Rejection(rejection.message, True, None),
                    )
                    continue
                delivery.charge(1, rest)
                answer = await self._attempt(target, rest, delivery)
                if isinstance(answer, Rejection):
                    pending.append((rest, answer))
                continue
            if rejection.named and not rejection.stored:
                # Nothing stored, the first line the server could not
                # parse named (InfluxDB 3 without partial writes): drop
                # it, send the lines before it, which it parsed, and the
                # lines after it, which it may refuse in turn.
                self._refuse(target, batch, delivery, rejection.named)
                bad = min(rejection.named)
                before = batch.part(list(range(bad)))
                after = batch.part(
                    [
                        index
                        for index in range(bad + 1, len(batch))
                        if index not in rejection.named
                    ]
                )
                for part in (before, after):
                    if not len(part):
                        continue
                    if delivery.budget < 1:
                        # Kept and sent again later, with a new budget.
                        raise RetryError(
                            f'{len(part)} lines left to send again after '
                            f'lines the server could not parse: '
                            f'{shorten(rejection.message, 300)}'
                        )
                    delivery.charge(1, part, stored=False)
                    answer = await self._attempt(target, part, delivery)
                    if isinstance(answer, Rejection):
                        pending.append((part, answer))
                continue
            if rejection.own and (rejection.count or 0) >= len(batch):
                refused = dict.fromkeys(range(len(batch)), rejection.message)
                self._refuse(target, batch, delivery, refused)
                continue
            if len(batch) == 1:
                self._refuse(target, batch, delivery, {0: rejection.message})
                continue
            # Lines sent again that the server stored already cost bytes.
            if not delivery.affords(2, batch, rejection.stored):
                self._give_up(target, batch, delivery, rejection)
                continue
            delivery.charge(2, batch, rejection.stored)
            first, second = batch.halves()
            answer = await self._attempt(target, first, delivery)
            if answer is True:
                # What the server refused is all in the second half.
                delivery.refund(second, rejection.stored)
                pending.append((second, rejection.inherited()))
                continue
            if isinstance(answer, Rejection):
                pending.append((first, answer))
            answer = await self._attempt(target, second, delivery)
            if isinstance(answer, Rejection):
                pending.append((second, answer))

    def _settle_named(
        self,
        target: _Target,
        batch: _Batch,
        delivery: _Delivery,
        rejection: Rejection,
    ) -> _Batch | None:
        """Settle the lines a server named and those before them.

        :returns: the lines after them, when the server said nothing of
            those yet
        """
        named = rejection.named
        self._refuse(target, batch, delivery, named)
        if not rejection.stored:
            # InfluxDB could parse none of the lines: it stored nothing.
            others = {
                index: rejection.message
                for index in range(len(batch))
                if index not in named
            }
            self._refuse(target, batch, delivery, others)
            return None
        through = rejection.through
        stored = [index for index in range(through) if index not in named]
        self._settle(batch.part(stored), delivery)
        if through >= len(batch):
            return None
        return batch.part(list(range(through, len(batch))))

    def _settle(self, batch: _Batch, delivery: _Delivery) -> None:
        """Count lines the server stored."""
        delivery.done.update(batch.sequences)
        self._counters.written += len(batch)

    def _refuse(
        self,
        target: _Target,
        batch: _Batch,
        delivery: _Delivery,
        refused: dict[int, str],
        why: str = '',
    ) -> None:
        """Drop the lines the server refused, by index, logging each.

        A few are logged per batch; the others are summed up at its end.
        """
        if not refused:
            return
        for index, reason in refused.items():
            reason = shorten(f'{why}: {reason}' if why else reason, 300)
            delivery.logged += 1
            delivery.last_reason = reason
            if delivery.logged <= _LOGGED_LINES:
                LOGGER.error(
                    'InfluxDB rejected a line for %s, dropping it: %s '
                    '(line: %s)',
                    self._where(target),
                    reason,
                    shorten(batch.lines[index], 300),
                )
            delivery.done.add(batch.sequences[index])
        self._counters.dropped['rejected'] += len(refused)

    def _give_up(
        self,
        target: _Target,
        batch: _Batch,
        delivery: _Delivery,
        rejection: Rejection,
    ) -> None:
        """Settle lines the budget left no request to single out."""
        refused = rejection.refused(len(batch))
        if not rejection.stored:
            LOGGER.error(
                'InfluxDB stored none of %d lines for %s and the writer '
                'could not single out those it refused within its budget '
                'of requests; dropping them all: %s (first line: %s)',
                len(batch),
                self._where(target),
                shorten(rejection.message, 300),
                shorten(batch.lines[0], 300),
            )
            delivery.done.update(batch.sequences)
            self._counters.dropped['rejected'] += len(batch)
            return
        known = rejection.count is not None
        LOGGER.error(
            'InfluxDB rejected %s%d of %d lines for %s and the '
            'writer could not single them out within its budget of '
            'requests; counting the others as written, as the server '
            'said: %s (first line: %s)',
            '' if known else 'an unknown number, counted as ',
            refused,
            len(batch),
            self._where(target),
            shorten(rejection.message, 300),
            shorten(batch.lines[0], 300),
        )
        delivery.done.update(batch.sequences)
        self._counters.dropped['rejected'] += refused
        self._counters.written += len(batch) - refused

    def _outstanding(self) -> int | None:
        """The lowest sequence number not yet delivered or dropped."""
        candidates = [
            target.sequences[0]
            for target in self._targets.values()
            if target.sequences
        ]
        candidates.extend(self._in_flight.values())
        if self._raw_at < len(self._raw):
            candidates.append(self._raw[self._raw_at])
        oldest = self._buffer.oldest_sequence()
        if oldest is not None:
            candidates.append(oldest)
        return min(candidates) if candidates else None

    def _resolved_through(self, sequence: int) -> bool:
        outstanding = self._outstanding()
        return outstanding is None or outstanding > sequence

    def _resolve_waiters(self, now: float) -> None:
        with self._lock:
            waiters = self._waiters
            if not waiters:
                return
            outstanding = self._outstanding()
            keep = []
            for waiter in waiters:
                if outstanding is None or outstanding > waiter.sequence:
                    _set_result(waiter.future, True)
                elif now >= waiter.deadline or self._unreachable(waiter):
                    _set_result(waiter.future, False)
                else:
                    keep.append(waiter)
            self._waiters = keep

    def _finish_stop(self) -> None:
        """Count and report what is left, resolve every waiter, stop."""
        counters = self._counters
        lost = self._buffer.clear() + counters.in_flight
        lost += (len(self._raw) - self._raw_at) // ENTRY_SIZE
        self._raw = []
        self._raw_at = 0
        for target in self._targets.values():
            lost += len(target.lines)
            target.lines.clear()
            target.sequences.clear()
        counters.backlog = 0
        counters.in_flight = 0
        self._in_flight.clear()
        self.lost_at_stop = lost
        if lost:
            counters.dropped['shutdown'] += lost
            if self._stopping is None:  # else the client reports it
                LOGGER.error(
                    'The InfluxDB writer stopped with %d measurements not '
                    'delivered (last error: %s)',
                    lost,
                    counters.last_error,
                )
        with self._lock:
            self._stopped.set()
            waiters, self._waiters = self._waiters, []
            stopping = self._stopping
        for waiter in waiters:
            _set_result(waiter.future, lost == 0)
        if stopping is not None:
            _set_result(stopping.future, lost == 0)


def _set_result(future: concurrent.futures.Future[bool], value: bool) -> None:
    if not future.done():
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            future.set_result(value)
