"""The bounded, thread-safe intake buffer.

:meth:`Buffer.put` is what :func:`~sprockets_influxdb.add_measurement` costs
on the request path: one lock, one tuple, one deque append.  Encoding happens
later, in the writer thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

__all__ = ['Buffer', 'Entry']

Entry = tuple[int, str, str, Mapping[str, str], Mapping[str, object], float]
"""A buffered measurement: ``(sequence, database, name, tags, fields,
timestamp)``.  The sequence number orders every measurement a client
accepted and is what :meth:`~sprockets_influxdb.Client.flush` waits on."""


class Buffer:
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
        self._lock = threading.Lock()
        self._items: deque[Entry] = deque()
        self._max_size = max_size
        self._trigger_size = min(trigger_size, max_size)
        self._sequence = 0
        #: Entries dropped because the buffer was full.
        self.overflowed = 0
        #: Monotonic time the oldest entry was added, or ``None`` when empty.
        self.since: float | None = None

    def __len__(self) -> int:
        return len(self._items)

    def resize(self, max_size: int, trigger_size: int) -> int:
        """Change the bounds, dropping the oldest entries over the new size.

        :param max_size: the most entries held
        :param trigger_size: the size at which :meth:`put` asks for a write
        :returns: how many entries were dropped
        """
        with self._lock:
            self._max_size = max_size
            self._trigger_size = min(trigger_size, max_size)
            dropped = max(len(self._items) - max_size, 0)
            for _ in range(dropped):
                self._items.popleft()
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
        with self._lock:
            self._sequence += 1
            items = self._items
            items.append(
                (self._sequence, database, name, tags, fields, timestamp)
            )
            size = len(items)
            if size > self._max_size:
                items.popleft()
                self.overflowed += 1
                return -1
            if size == 1:
                self.since = time.monotonic()
                return 1
            if size == self._trigger_size:
                return 2
            elsewhere = self._elsewhere
            if (
                elsewhere is not None
                and not self._over
                and size + elsewhere.backlog > self._max_size
            ):
                # Over the bound in total: once per take, have the writer
                # take everything and drop the oldest.
                self._over = True
                return 2
            return 0

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
            or len(self._items) >= self._trigger_size
            or now - since >= interval
        )

    def take(self, limit: int | None = None) -> deque[Entry]:
        """Remove and return the oldest entries, oldest first.

        :param limit: the most entries to take (default: all)
        """
        with self._lock:
            items = self._items
            if limit is None or len(items) <= limit:
                self._items = deque()
                self.since = None
                self._over = False
                return items
            popleft = items.popleft
            return deque([popleft() for _ in range(limit)])

    def clear(self) -> int:
        """Drop everything; return how many entries were dropped."""
        return len(self.take())

    @property
    def last_sequence(self) -> int:
        """The sequence number of the last entry ever added."""
        return self._sequence

    def oldest_sequence(self) -> int | None:
        """The sequence number of the oldest entry held, if any."""
        try:
            return self._items[0][0]
        except IndexError:
            return None
