"""The :class:`Client`: settings, buffer, writer and their lifecycle."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Generator, Mapping
from typing import Any

import anyio.to_thread
import sniffio

from sprockets_influxdb import line_protocol
from sprockets_influxdb._logging import INTERVAL as _LOG_INTERVAL
from sprockets_influxdb.buffer import Buffer
from sprockets_influxdb.config import Settings
from sprockets_influxdb.measurement import Measurement
from sprockets_influxdb.writer import Counters, Writer

__all__ = ['Client', 'FlushFuture', 'Stats']

LOGGER = logging.getLogger('sprockets_influxdb')


class FlushFuture(concurrent.futures.Future[bool]):
    """The result of :meth:`Client.flush` and :meth:`Client.shutdown`.

    A :class:`concurrent.futures.Future` that resolves ``True`` when
    everything it waits for was delivered (or definitively dropped) and
    ``False`` when its timeout passed first.  From a thread, call
    ``.result(timeout)``; from an asyncio, Tornado or trio coroutine,
    ``await`` it (or ``yield`` it in a ``tornado.gen`` coroutine).
    """

    def __await__(self) -> Generator[Any, None, bool]:
        """Wait for the result without blocking the running event loop."""
        if sniffio.current_async_library() == 'asyncio':
            return asyncio.wrap_future(self).__await__()
        return self._wait_in_thread().__await__()

    async def _wait_in_thread(self) -> bool:
        return await anyio.to_thread.run_sync(
            self.result, abandon_on_cancel=True
        )


@dataclasses.dataclass(frozen=True)
class Stats:
    """Counters of a :class:`Client`, as returned by :meth:`Client.stats`.

    ``added`` equals ``written + sum(dropped.values()) + buffered +
    in_flight`` whenever the writer is idle (for example once
    :meth:`Client.flush` resolved); while it moves measurements between
    stages, a snapshot can be off by the batch being moved.
    """

    #: Measurements passed to ``add_measurement`` (valid ones).
    added: int
    #: Measurements the server acknowledged.
    written: int
    #: Measurements dropped, by reason: ``overflow`` (the buffer was full),
    #: ``rejected`` (the server refused the line), ``shutdown`` (added after
    #: shutdown, or not delivered by its deadline), ``sampled`` (left out by
    #: sampling), ``invalid`` (could not be encoded), ``collision`` (would
    #: have replaced another point of its series: see :ref:`timestamps`).
    dropped: Mapping[str, int]
    #: Requests that were retried after an error.
    retries: int
    #: HTTP requests made.
    requests: int
    #: Requests that failed (any status but 2xx, timeouts, network errors).
    failed_requests: int
    #: Measurements waiting to be written.
    buffered: int
    #: Measurements in requests under way.
    in_flight: int
    #: The last error met, or ``None``.
    last_error: str | None
    #: The line protocol encoder in use: ``'compiled'`` (the C extension
    #: built with the package) or ``'python'`` (see :ref:`compiled-encoder`).
    encoder: str = line_protocol.ENCODER
    #: Measurements the writer encoded, by encoder: ``compiled`` and
    #: ``python`` (which the compiled one leaves measurements of unusual
    #: types to).
    encoded: Mapping[str, int] = dataclasses.field(
        default_factory=lambda: {'compiled': 0, 'python': 0}
    )

    @property
    def dropped_total(self) -> int:
        """All dropped measurements, whatever the reason."""
        return sum(self.dropped.values())


_clients: weakref.WeakSet[Client] = weakref.WeakSet()


class Client:
    """An independent InfluxDB client: its own settings, buffer and writer.

    Most applications use the module-level functions, which act on one
    default client; create more clients to write to several servers.

    :param url: the server (``http://host:8086``) or its write endpoint;
        default from ``INFLUXDB_URL`` or ``INFLUXDB_SCHEME``,
        ``INFLUXDB_HOST`` and ``INFLUXDB_PORT``
    :param auth_username: user name for HTTP basic authentication
    :param auth_password: password for HTTP basic authentication
    :param submission_interval: milliseconds after the oldest pending
        measurement was added at which a batch is written
    :param max_batch_size: lines per request at most
    :param max_clients: requests in flight at most
    :param base_tags: tags added to every measurement
    :param max_buffer_size: measurements held at most; the oldest are
        dropped beyond it
    :param trigger_size: pending measurements that trigger a write
    :param sample_probability: probability to keep each measurement
    :param settings: further keyword-only settings, as in :class:`Settings`
        (``precision``, ``request_timeout``, ``flush_timeout``,
        ``shutdown_timeout``, ``gzip``, ``max_body_size``,
        ``retention_policy``, ``backoff_base``, ``backoff_max``,
        ``tag_hostname``, ``environment``, ``enabled``)
    :raises ValueError: for an invalid setting, naming it
    :raises TypeError: for an unknown setting or one of the wrong type
    """

    # Measurements made for the default client already carry its base tags
    # (a copy made at construction, as historically); other clients add
    # theirs to every measurement that lacks them.
    _merge_base_tags = True

    def __init__(
        self,
        url: str | None = None,
        auth_username: str | None = None,
        auth_password: str | None = None,
        submission_interval: int | None = None,
        max_batch_size: int | None = None,
        max_clients: int | None = None,
        base_tags: Mapping[str, object] | None = None,
        max_buffer_size: int | None = None,
        trigger_size: int | None = None,
        sample_probability: float | None = None,
        **settings: Any,
    ) -> None:
        self._settings = Settings.resolve(
            url=url,
            username=auth_username,
            password=auth_password,
            submission_interval=submission_interval,
            max_batch_size=max_batch_size,
            max_clients=max_clients,
            base_tags=base_tags,
            max_buffer_size=max_buffer_size,
            trigger_size=trigger_size,
            sample_probability=sample_probability,
            **settings,
        )
        self._start()

    @classmethod
    def _from_settings(cls, settings: Settings) -> Client:
        """Build a client from settings resolved already."""
        client = cls.__new__(cls)
        client._settings = settings
        client._start()
        return client

    def _start(self) -> None:
        self._io_loop: Any = None
        self._setup()
        _clients.add(self)
        if self._settings.enabled:
            line_protocol.report_missing()

    def _setup(self) -> None:
        settings = self._settings
        self._counters = Counters()
        self._buffer = Buffer(
            settings.max_buffer_size, settings.trigger_size, self._counters
        )
        self._add = self._buffer.add
        self._put = self._buffer.put
        self._writer = Writer(
            self._buffer, self._counters, settings, self._merge_base_tags
        )
        self._accepting = True
        self._state_lock = threading.Lock()
        self._apply(settings)
        self._sampled = 0
        self._refused = 0
        self._overflow_reported = 0
        self._overflow_warned_at = 0.0
        self._refused_warned_at = 0.0
        self._shutdown_future: FlushFuture | None = None
        self._stop_deadline = 0.0

    def _apply(self, settings: Settings) -> None:
        with self._state_lock:
            self._enabled = settings.enabled
            self._probability = settings.sample_probability
            self._update_open()

    def _update_open(self) -> None:
        # One test on the request path instead of three; under
        # _state_lock, so that configure() and shutdown() racing cannot
        # leave it open after shutdown.
        self._open = (
            self._enabled and self._accepting and self._probability >= 1.0
        )
        # The same, for a client whose add_measurement is this class's: the
        # request metrics then add without calling it (a subclass that
        # overrides it, a test's MemoryClient say, is always called).
        self._open_plain = (
            self._open and type(self).add_measurement is Client.add_measurement
        )

    def __repr__(self) -> str:
        return f'<Client {self._settings.url} enabled={self._enabled}>'

    @property
    def settings(self) -> Settings:
        """The current settings; change them with :meth:`configure`."""
        return self._settings

    def configure(self, **changes: Any) -> None:
        """Change settings at run time, validating them.

        :param changes: settings by :class:`Settings` attribute name
        :raises ValueError: for an invalid value, naming the setting
        :raises TypeError: for an unknown setting or a wrong type
        """
        settings = self._settings.replace(**changes)
        self._settings = settings
        self._apply(settings)
        dropped = self._buffer.resize(
            settings.max_buffer_size, settings.trigger_size
        )
        if dropped:
            LOGGER.warning(
                'max_buffer_size is now %d: dropped the %d oldest buffered '
                'measurements',
                settings.max_buffer_size,
                dropped,
            )
        self._writer.configure(settings)

    def set_io_loop(self, io_loop: Any) -> None:
        """Make :meth:`flush` and :meth:`shutdown` return IOLoop futures.

        :param io_loop: a :class:`tornado.ioloop.IOLoop`, or ``None`` for
            plain :class:`FlushFuture` objects
        :raises TypeError: when it is not an IOLoop
        """
        if io_loop is not None and not callable(
            getattr(io_loop, 'add_callback', None)
        ):
            raise TypeError(
                f'io_loop must be a Tornado IOLoop, not {io_loop!r}'
            )
        self._io_loop = io_loop

    def add_measurement(self, measurement: Measurement) -> None:
        """Queue a measurement for writing.

        Never blocks on the network and never raises for network trouble.
        A copy is queued: later changes to *measurement* are not sent.
        Safe to call from any thread.

        :param measurement: the measurement to write
        :raises ValueError: when it has no fields
        """
        fields = measurement.fields
        if not fields:
            raise ValueError(
                f'measurement {measurement.name!r} has no fields; set at '
                'least one with set_field()'
            )
        if not self._open and not self._admit():
            return
        signal = self._add(measurement)
        if signal:
            self._signalled(signal)

    def _signalled(self, signal: int) -> None:
        """Act on what the buffer said when a measurement was added.

        :param signal: as :meth:`.Buffer.put` returns it, not 0
        """
        if signal > 0:
            self._writer.wake()
        else:
            self._report_overflow()

    def _admit(self) -> bool:
        """Whether to keep a measurement when intake is not simply open."""
        if not self._enabled:
            return False
        if not self._accepting:
            self._refuse()
            return False
        probability = self._probability
        if probability < 1.0 and random.random() >= probability:
            self._sampled += 1
            return False
        return True

    def _refuse(self) -> None:
        self._refused += 1
        now = time.monotonic()
        if now - self._refused_warned_at >= _LOG_INTERVAL:
            self._refused_warned_at = now
            LOGGER.warning(
                'Dropping measurements added after shutdown '
                '(%d dropped so far)',
                self._refused,
            )

    def _report_overflow(self) -> None:
        now = time.monotonic()
        if now - self._overflow_warned_at >= _LOG_INTERVAL:
            self._overflow_warned_at = now
            total = self._buffer.overflowed
            LOGGER.warning(
                'The buffer is full (%d measurements): dropped %d of the '
                'oldest since the last warning (%d in all)',
                self._settings.max_buffer_size,
                total - self._overflow_reported,
                total,
            )
            self._overflow_reported = total

    def flush(
        self, timeout: float | None = None, *, wait_for_server: bool = True
    ) -> Any:
        """Write everything added so far, now.

        Any backoff wait in progress is cut short.

        :param timeout: seconds to wait at most (default: the
            ``flush_timeout`` setting)
        :param wait_for_server: when false, give up (resolving ``False``)
            as soon as a connection fails if no server was ever reached:
            what an application that stops does, so that it does not wait
            for a server that is not there
        :returns: a :class:`FlushFuture` (or, after :meth:`set_io_loop`, a
            future of that IOLoop) resolving ``True`` once everything added
            before the call was delivered or definitively dropped, ``False``
            if the timeout passed first
        """
        if timeout is None:
            timeout = self._settings.flush_timeout
        if not self._enabled:
            return self._future(_resolved(True))
        return self._future(self._writer.flush(timeout, wait_for_server))

    def shutdown(self, timeout: float | None = None) -> Any:
        """Stop intake, deliver what is pending within a deadline, stop.

        Measurements added afterwards are dropped and counted.  What is not
        delivered by the deadline is dropped, counted as ``shutdown`` and
        reported in one error.  When no server was ever reached, it does
        not wait for the deadline once a connection failed.  Calling it
        again returns the same result.

        :param timeout: seconds to keep trying (default: the
            ``shutdown_timeout`` setting)
        :returns: a future as :meth:`flush` does, ``True`` when nothing was
            lost
        """
        return self._future(self._stop(timeout))

    def _stop(self, timeout: float | None = None) -> FlushFuture:
        if self._shutdown_future is not None:
            return self._shutdown_future
        if timeout is None:
            timeout = self._settings.shutdown_timeout
        with self._state_lock:
            self._accepting = False
            self._update_open()
        result = FlushFuture()
        self._shutdown_future = result
        self._stop_deadline = time.monotonic() + timeout
        stopped = self._writer.stop(timeout)
        stopped.add_done_callback(self._report_drops)
        _chain(stopped, result)
        return result

    def _report_drops(self, _: concurrent.futures.Future[bool]) -> None:
        """Sum up at shutdown what was dropped, whatever was logged before.

        In one line: an error when measurements could not be delivered
        before the writer stopped, else a warning for earlier drops.
        """
        stats = self.stats()
        lost = {
            reason: count
            for reason, count in stats.dropped.items()
            if count and reason != 'sampled'
        }
        if not lost:
            return
        summary = ', '.join(
            f'{count} ({reason})' for reason, count in lost.items()
        )
        undelivered = self._writer.lost_at_stop
        if undelivered:
            LOGGER.error(
                'Shut down with %d measurements not delivered to InfluxDB '
                'at %s (%s); written %d, dropped in all %s',
                undelivered,
                self._settings.url,
                stats.last_error or 'no time left',
                stats.written,
                summary,
            )
        else:
            LOGGER.warning(
                'Shut down having written %d measurements and dropped %s',
                stats.written,
                summary,
            )

    def _future(self, future: concurrent.futures.Future[bool]) -> Any:
        io_loop = self._io_loop
        if io_loop is None:
            if isinstance(future, FlushFuture):
                return future
            result = FlushFuture()
            _chain(future, result)
            return result
        loop = getattr(io_loop, 'asyncio_loop', None)
        if loop is None:  # pragma: no cover - Tornado < 5
            return future
        bound: asyncio.Future[bool] = loop.create_future()

        def copy(done: concurrent.futures.Future[bool]) -> None:
            def resolve() -> None:
                if not bound.done():
                    bound.set_result(done.result())

            # A loop closed by then has nobody waiting on the future.
            with contextlib.suppress(RuntimeError):
                io_loop.add_callback(resolve)

        future.add_done_callback(copy)
        return bound

    def stats(self) -> Stats:
        """Return the counters of this client.

        :returns: a :class:`Stats` snapshot
        """
        counters = self._counters
        dropped = dict(counters.dropped)
        dropped['overflow'] += self._buffer.overflowed
        dropped['sampled'] += self._sampled
        dropped['shutdown'] += self._refused
        buffered = len(self._buffer) + counters.backlog
        return Stats(
            added=(self._buffer.last_sequence + self._sampled + self._refused),
            written=counters.written,
            dropped=dropped,
            retries=counters.retries,
            requests=counters.requests,
            failed_requests=counters.failed_requests,
            buffered=buffered,
            in_flight=counters.in_flight,
            last_error=counters.last_error,
            encoder=line_protocol.ENCODER,
            encoded=dict(counters.encoded),
        )

    def _after_fork(self) -> None:
        self._setup()

    def _flush_at_exit(self) -> tuple[float, FlushFuture] | None:
        """Flush for the exit hooks.

        :returns: the deadline and the future, if anything is flushed
        """
        if not self._enabled or self._shutdown_future is not None:
            return None
        timeout = self._settings.shutdown_timeout
        future = FlushFuture()
        _chain(self._writer.flush(timeout, patient=False), future)
        return time.monotonic() + timeout, future

    def _drain_at_exit(
        self, waited: float
    ) -> tuple[float, FlushFuture] | None:
        """Shut down for the exit hooks, with what is left of the window.

        :param waited: seconds the exit hooks already waited
        :returns: the deadline and the future, if the writer still runs
        """
        if not self._enabled or self._writer.stopped:
            return None
        if self._shutdown_future is None:
            self._stop(max(0.0, self._settings.shutdown_timeout - waited))
        assert self._shutdown_future is not None
        return self._stop_deadline, self._shutdown_future


def _resolved(value: bool) -> FlushFuture:
    future = FlushFuture()
    future.set_result(value)
    return future


def _chain(
    source: concurrent.futures.Future[bool],
    target: concurrent.futures.Future[bool],
) -> None:
    def copy(done: concurrent.futures.Future[bool]) -> None:
        if not target.done():
            target.set_result(done.result())

    source.add_done_callback(copy)


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._after_fork()


# Seconds the exit hooks have waited: together they wait one window of
# ``shutdown_timeout`` at most, whatever the number of clients.
_exit_waited = 0.0
# Beyond its deadline, a writer takes this long at most to stop.
_EXIT_GRACE = 1.0


def _flush_all() -> None:
    global _exit_waited
    started = time.monotonic()
    pending = []
    for client in list(_clients):
        try:
            flushing = client._flush_at_exit()
        except Exception:  # pragma: no cover - never fail the exit
            LOGGER.exception('Could not deliver measurements at exit')
            continue
        if flushing is not None:
            pending.append(flushing)
    _wait_at_exit(pending)
    _exit_waited += time.monotonic() - started


def _drain_all() -> None:
    pending = []
    for client in list(_clients):
        try:
            stopping = client._drain_at_exit(_exit_waited)
        except Exception:  # pragma: no cover - never fail the exit
            LOGGER.exception('Could not deliver measurements at exit')
            continue
        if stopping is not None:
            pending.append(stopping)
    _wait_at_exit(pending)


def _wait_at_exit(pending: list[tuple[float, FlushFuture]]) -> None:
    """Wait for futures that resolve by their deadlines, all at once."""
    if not pending:
        return
    deadline = max(deadline for deadline, _ in pending)
    concurrent.futures.wait(
        [future for _, future in pending],
        timeout=max(0.0, deadline - time.monotonic()) + _EXIT_GRACE,
    )


def _register_hooks() -> None:
    if hasattr(os, 'register_at_fork'):
        os.register_at_fork(after_in_child=_after_fork_in_child)
    # Two exit hooks.  threading's run when the main thread ends, while
    # thread pools still work (host names are resolved in one): they
    # deliver what is buffered then.  atexit's run once every other thread
    # has ended: they deliver what those threads added meanwhile, then stop.
    register = getattr(threading, '_register_atexit', None)
    if register is not None:
        with contextlib.suppress(RuntimeError):  # already shutting down
            register(_flush_all)
    atexit.register(_drain_all)


_register_hooks()
