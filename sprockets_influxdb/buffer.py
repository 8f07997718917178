"""The bounded, thread-safe intake buffer.

:meth:`Buffer.put` is what :func:`~sprockets_influxdb.add_measurement` costs
on the request path: one lock and one deque extend.  Encoding happens later,
in the writer thread.

The values of an entry are stored one after the other in one flat deque
rather than as a tuple each.  A tuple holding the tag and field dictionaries
stays tracked by the garbage collector for as long as it lives, so a buffer
of many thousands of entries would make the application's full collections
(which walk every tracked object) both more frequent and longer.  Flat, the
buffer adds no tracked object at all: the dictionaries hold only text and
numbers, which the collector ignores.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any

from sprockets_influxdb.measurement import _compiled

if TYPE_CHECKING:
    from sprockets_influxdb.measurement import Measurement

__all__ = ['ENTRY_SIZE', 'Buffer', 'Entry', 'entries']

Entry = tuple[int, str, str, Mapping[str, str], Mapping[str, object], float]
"""A buffered measurement: ``(sequence, database, name, tags, fields,
timestamp)``.  The sequence number orders every measurement a client
accepted and is what :meth:`~sprockets_influxdb.Client.flush` waits on."""

#: The number of values an entry takes in the flat storage.
ENTRY_SIZE = 6


def entries(values: Sequence[Any]) -> Iterator[Entry]:
    """Iterate over the entries of what :meth:`Buffer.take` returned.

    :param values: flat values, :data:`ENTRY_SIZE` per entry
    """
    iterator = iter(values)
    return zip(*([iterator] * ENTRY_SIZE))


if TYPE_CHECKING:
    _Base = object
else:
    # The compiled base holds the attributes and does put() and add(), the
    # same steps as below (see _speedups.c).
    _Base = object if _compiled is None else _compiled.BufferBase


class Buffer(_Base):
    """Measurements accepted but not yet taken by the writer.

    Bounded by *max_size*: when full, the oldest entry is dropped and
    counted in :attr:`overflowed`.

    :param max_size: the most entries held, here and in *elsewhere*
    :param trigger_size: the size at which :meth:`put` asks for a write
    :param elsewhere: an object whose ``backlog`` attribute counts the
        entries the writer took but has not sent yet: :meth:`put` asks for
        a write as soon as both together exceed *max_size*, so that the
        writer drops the oldest
    """

    def __init__(
        self, max_size: int, trigger_size: int, elsewhere: Any = None
    ) -> None:
        self._elsewhere = elsewhere
        self._over = False
        # The compiled put() takes its own lock type directly, without the
        # method calls a threading.Lock needs.
        self._lock: Any = (
            threading.Lock() if _compiled is None else _compiled.BufferLock()
        )
        self._items: deque[Any] = deque()
        self._max_size = max_size
        self._trigger_size = min(trigger_size, max_size)
        self._max_slots = max_size * ENTRY_SIZE
        self._trigger_slots = self._trigger_size * ENTRY_SIZE
        self._sequence = 0
        #: Entries dropped because the buffer was full.
        self.overflowed = 0
        #: Monotonic time the oldest entry was added, or ``None`` when empty.
        self.since: float | None = None

    def __len__(self) -> int:
        return len(self._items) // ENTRY_SIZE

    def resize(self, max_size: int, trigger_size: int) -> int:
        """Change the bounds, dropping the oldest entries over the new size.

        :param max_size: the most entries held
        :param trigger_size: the size at which :meth:`put` asks for a write
        :returns: how many entries were dropped
        """
        with self._lock:
            self._max_size = max_size
            self._trigger_size = min(trigger_size, max_size)
            self._max_slots = max_size * ENTRY_SIZE
            self._trigger_slots = self._trigger_size * ENTRY_SIZE
            dropped = max(len(self._items) // ENTRY_SIZE - max_size, 0)
            popleft = self._items.popleft
            for _ in repeat(None, dropped * ENTRY_SIZE):
                popleft()
            self.overflowed += dropped
            return dropped

    def put(
        self,
        database: str,
        name: str,
        tags: Mapping[str, str],
        fields: Mapping[str, object],
        timestamp: float,
    ) -> int:
        """Add a measurement.

        :returns: ``1`` when the buffer was empty before (the interval timer
            starts), ``2`` when the trigger size was reached, ``-1`` when the
            oldest entry had to be dropped, else ``0``
        """
        # acquire() and release() cost half of a with statement.
        lock = self._lock
        lock.acquire()
        try:
            sequence = self._sequence = self._sequence + 1
            items = self._items
            items.extend((sequence, database, name, tags, fields, timestamp))
            # Counted in values, ENTRY_SIZE per entry: no division here.
            slots = len(items)
            if slots > self._max_slots:
                popleft = items.popleft
                for _ in repeat(None, ENTRY_SIZE):
                    popleft()
                self.overflowed += 1
                return -1
            if slots == ENTRY_SIZE:
                self.since = time.monotonic()
                return 1
            if slots == self._trigger_slots:
                return 2
            elsewhere = self._elsewhere
            if (
                elsewhere is not None
                and not self._over
                and slots + elsewhere.backlog * ENTRY_SIZE > self._max_slots
            ):
                # Over the bound in total: once per take, have the writer
                # take everything and drop the oldest.
                self._over = True
                return 2
            return 0
        finally:
            lock.release()

    def add(self, measurement: Measurement) -> int:
        """Add a measurement: :meth:`put` its values (copied dictionaries).

        :returns: as :meth:`put`
        """
        tags, fields = measurement._snapshot()
        return self.put(
            measurement.database,
            measurement.name,
            tags,
            fields,
            measurement._time,
        )

    def due(self, interval: float, now: float) -> bool:
        """Tell whether the buffer should be written now.

        :param interval: the submission interval, in seconds
        :param now: the current monotonic time
        :returns: whether the trigger size or the interval was reached, or
            the bound exceeded
        """
        since = self.since
        if since is None:
            return False
        return (
            self._over
            or len(self._items) >= self._trigger_slots
            or now - since >= interval
        )

    def take(self) -> deque[Any]:
        """Remove and return every entry, oldest first, in constant time.

        :returns: their values, flat: iterate with :func:`entries`, count
            with ``len() // ENTRY_SIZE``
        """
        with self._lock:
            items = self._items
            self._items = deque()
            self.since = None
            self._over = False
            return items

    def clear(self) -> int:
        """Drop everything; return how many entries were dropped."""
        return len(self.take()) // ENTRY_SIZE

    @property
    def last_sequence(self) -> int:
        """The sequence number of the last entry ever added."""
        return self._sequence

    def oldest_sequence(self) -> int | None:
        """The sequence number of the oldest entry held, if any."""
        # Under the lock: put() drops an entry value by value when full.
        with self._lock:
            try:
                sequence: int = self._items[0]
            except IndexError:
                return None
            return sequence


if _compiled is not None:
    _compiled.configure_buffer(time.monotonic)
    # The compiled put() and add() take the place of those above.
    del Buffer.put, Buffer.add
