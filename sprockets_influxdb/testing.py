"""Testing applications that record measurements, without an InfluxDB.

A :class:`MemoryClient` keeps the measurements it is given in a list
instead of writing them: make it the default client for a while with
:func:`capture` (the module-level functions, the Tornado mixin and the
middleware without a ``client`` argument then use it), or give it to a
middleware as its ``client``.  Nothing waits on a server, and a test can
look at exactly what a request recorded.  With pytest, the
``influxdb_capture`` fixture does the same for the whole test (the package
registers it as a pytest plugin; there is nothing to configure).  The
documentation's "Testing" page has an example for each framework.

This module is imported only by tests: the library never imports it, so it
costs an application nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import sprockets_influxdb
from sprockets_influxdb import line_protocol
from sprockets_influxdb.client import Client, FlushFuture, Stats
from sprockets_influxdb.measurement import Measurement, set_default_tags

__all__ = ['MemoryClient', 'capture']

LOGGER = logging.getLogger('sprockets_influxdb')


class MemoryClient(Client):
    """A :class:`~sprockets_influxdb.Client` that keeps what it is given.

    Each measurement passed to :meth:`add_measurement` is copied, as the
    real client copies it, with the client's base tags added, checked the
    way the writer checks it (one that cannot be written is dropped,
    counted as ``invalid`` and logged), and appended to
    :attr:`measurements`.  Nothing is sampled out, nothing is ever sent,
    and :meth:`flush` and :meth:`shutdown` resolve at once.

    :param settings: the settings of :class:`~sprockets_influxdb.Client`
        (read from the environment as for any client); only the base tags
        matter here
    """

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._memory_lock = threading.Lock()
        self._invalid = 0
        self._kept = 0
        self._stopped = False
        #: The measurements added, copied, oldest first.
        self.measurements: list[Measurement] = []

    def add_measurement(self, measurement: Measurement) -> None:
        """Keep a copy of *measurement*.

        :param measurement: the measurement to keep
        :raises ValueError: when it has no fields
        """
        if not measurement.fields:
            raise ValueError(
                f'measurement {measurement.name!r} has no fields; set at '
                'least one with set_field()'
            )
        copy = Measurement.__new__(Measurement)
        copy.database = measurement.database
        copy.name = measurement.name
        tags = dict(measurement.tags)
        if self._merge_base_tags:
            tags = {**self.settings.base_tags, **tags}
        copy.tags = tags
        copy.fields = dict(measurement.fields)
        copy._time = measurement._time
        try:
            line_protocol.encode(
                copy.name, copy.tags, copy.fields, copy._time, 'n'
            )
        except ValueError as error:
            with self._memory_lock:
                self._invalid += 1
            LOGGER.error(
                'Dropping a measurement %r for database %r that cannot be '
                'written: %s',
                copy.name,
                copy.database,
                error,
            )
            return
        with self._memory_lock:
            if self._stopped:
                self._refused += 1
                return
            self.measurements.append(copy)
            self._kept += 1

    def find(self, name: str | None = None, **tags: str) -> list[Measurement]:
        """The measurements kept with this name and these tags.

        :param name: the measurement name (any, when ``None``)
        :param tags: tags they must have, with these values
        :returns: the matching measurements, oldest first
        """
        return [
            measurement
            for measurement in list(self.measurements)
            if (name is None or measurement.name == name)
            and all(measurement.tags.get(k) == v for k, v in tags.items())
        ]

    def lines(self, precision: str = 'ns') -> list[str]:
        """The measurements kept, as the lines the writer would send.

        :param precision: the timestamp precision
        :returns: one line of line protocol per measurement
        """
        wire = line_protocol.normalize_precision(precision)
        return [
            line_protocol.encode(m.name, m.tags, m.fields, m._time, wire)
            for m in list(self.measurements)
        ]

    def clear(self) -> None:
        """Forget the measurements kept so far.

        :meth:`stats` still counts them.
        """
        with self._memory_lock:
            self.measurements.clear()

    def flush(
        self, timeout: float | None = None, *, wait_for_server: bool = True
    ) -> Any:
        """Resolve at once: there is nothing to send.

        :returns: a future resolved to ``True``
        """
        return self._future(_done())

    def shutdown(self, timeout: float | None = None) -> Any:
        """Stop keeping measurements (later ones are counted as dropped).

        :returns: a future resolved to ``True``
        """
        with self._memory_lock:
            self._stopped = True
        return self._future(_done())

    def stats(self) -> Stats:
        """Return counters as the real client keeps them.

        What was kept counts as written.
        """
        with self._memory_lock:
            kept = self._kept
            invalid = self._invalid
            refused = self._refused
        dropped = dict.fromkeys(
            ('overflow', 'rejected', 'shutdown', 'sampled', 'invalid'), 0
        )
        dropped['collision'] = 0
        dropped['invalid'] = invalid
        dropped['shutdown'] = refused
        return Stats(
            added=kept + invalid + refused,
            written=kept,
            dropped=dropped,
            retries=0,
            requests=0,
            failed_requests=0,
            buffered=0,
            in_flight=0,
            last_error=None,
        )

    def __repr__(self) -> str:
        return f'<MemoryClient {len(self.measurements)} measurements>'


def _done() -> FlushFuture:
    future = FlushFuture()
    future.set_result(True)
    return future


@contextlib.contextmanager
def capture(**settings: Any) -> Iterator[MemoryClient]:
    """Make a :class:`MemoryClient` the default client, for a while.

    The module-level functions (:func:`~sprockets_influxdb.add_measurement`
    and the others), the Tornado mixin and the middleware made without a
    ``client`` use it until the block ends; then the previous default
    client is back.  New measurements start with its base tags.

    :param settings: settings for the :class:`MemoryClient`
    :returns: a context manager giving the client
    """
    memory = MemoryClient(**settings)
    # As the default client: measurements carry its base tags already.
    memory._merge_base_tags = False
    with sprockets_influxdb._lock:
        previous = sprockets_influxdb._default
        previous_tags = _current_default_tags()
        sprockets_influxdb._default = memory
        set_default_tags(memory.settings.base_tags)
    try:
        yield memory
    finally:
        with sprockets_influxdb._lock:
            sprockets_influxdb._default = previous
            set_default_tags(previous_tags)


def _current_default_tags() -> Mapping[str, str] | None:
    from sprockets_influxdb import measurement

    return measurement._default_tags
