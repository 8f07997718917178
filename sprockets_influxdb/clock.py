"""The library's clock: point times no other point on the host shares.

InfluxDB keys a point by its series and its time, so two points of one
series at one time are one point: the later replaces the earlier.  Every
time the library chooses itself (when a
:class:`~sprockets_influxdb.Measurement` is made, when a request starts)
comes from :func:`now_ns`, which makes such a time unique on the host
without any shared state:

* **Across processes**: a time is an integer number of nanoseconds whose
  last three digits are the process id modulo 1000 (the process's
  *discriminator*, derived again in a child after :func:`os.fork`).  Two
  processes whose ids differ modulo 1000 never produce the same time.
* **Within a process**: the times are strictly increasing.  A time is the
  system clock's reading rounded down to the nearest time ending in the
  discriminator, so a second reading within the same microsecond would
  give the same time again: the clock then waits, under a lock and for
  less than a microsecond, for the next one.

So the recorded time of a point is never after the moment the clock was
read and less than one microsecond before it: there is no drift, whatever
the rate; a process cannot take more than one time per microsecond.

A time nobody needs any more can be given back (:func:`give_back`): when
it is still the last one handed out, the next one may be the same.  A
:class:`~sprockets_influxdb.Measurement` gives its time back when
:meth:`~sprockets_influxdb.Measurement.set_timestamp` replaces it before
anything read it, so points built with times of their own do not wait for
the clock.

On a clock coarser than a microsecond (the resolution
:func:`time.get_clock_info` reports), the digits below its resolution carry
no information: times within one tick are handed out one microsecond apart
from its start, and the clock waits for the next tick only once they are
used up.
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Callable

__all__ = [
    'COMPILED',
    'STEP',
    'Clock',
    'align',
    'arrival',
    'discriminator',
    'give_back',
    'now_ns',
]

#: Nanoseconds between two times of one process: the digits below hold the
#: process's discriminator.
STEP = 1000


def _resolution() -> int:
    """The clock's resolution in nanoseconds, at least 1."""
    seconds = time.get_clock_info('time').resolution
    if not math.isfinite(seconds) or seconds <= 0:
        return 1
    return max(1, math.ceil(seconds * 1e9))


_RESOLUTION = _resolution()
_offset = os.getpid() % STEP


def discriminator() -> int:
    """Return the last three digits of this process's times.

    :returns: the process id modulo 1000
    """
    return _offset


def align(nanoseconds: int, *, up: bool = False) -> int:
    """Round a time to the nearest one ending in the discriminator.

    :param nanoseconds: a time in nanoseconds since the epoch
    :param up: round up (a time given by the user: written at the same
        time at any coarser precision when it is a round number), not down
        (a time read from a clock: never later than the reading)
    :returns: the time, less than one microsecond away
    """
    if up:
        return nanoseconds + (_offset - nanoseconds) % STEP
    return nanoseconds - (nanoseconds - _offset) % STEP


def arrival(seconds: float) -> int | None:
    """Return a moment of the system clock as a time for a point.

    For a moment another clock reading gave (Tornado's time of a request's
    arrival): :func:`time.time`'s seconds, rounded down to the nearest
    time ending in the discriminator, as :func:`align` rounds a time the
    clock read.  Moments two microseconds or more apart give different
    times (a float of seconds since 1970 holds a moment to about a quarter
    of a microsecond).

    :param seconds: a :func:`time.time` value
    :returns: the time in nanoseconds, or ``None`` when the system clock
        is coarser than a microsecond (the moments of one tick would all
        be one time: take :func:`now_ns` instead) or *seconds* is not a
        time after 1970 and before 2262
    """
    if _RESOLUTION > STEP or not 1e-6 <= seconds < 9.2e9:
        return None
    return align(int(seconds * 1e9))


class Clock:
    """The clock in pure Python, and what the compiled :func:`now_ns` does.

    :func:`now_ns` is one when the compiled extension is not built.  Calling
    it returns a time for a new point, in nanoseconds since the
    epoch: never after the moment of the call and less than a microsecond
    before it (on a clock of nanosecond resolution), ending in *offset*,
    and later than any time returned before and not given back
    (:meth:`give_back`).

    :param read: the system clock, in nanoseconds
    :param resolution: its resolution, in nanoseconds
    :param offset: the discriminator, 0 to 999
    """

    def __init__(
        self,
        read: Callable[[], int] = time.time_ns,
        resolution: int = _RESOLUTION,
        offset: int = _offset,
    ) -> None:
        self._read = read
        self._resolution = resolution
        self._lock = threading.Lock()
        self.reset(offset)

    def reset(self, offset: int) -> None:
        """Start again with another discriminator (in a forked child).

        :param offset: the discriminator, 0 to 999
        """
        # A thread of the parent may have held the lock at the fork.
        self._lock = threading.Lock()
        self._offset = offset
        self._last = 0

    def __call__(self) -> int:
        """Return a time for a new point (see :class:`Clock`)."""
        read = self._read
        offset = self._offset
        with self._lock:
            last = self._last
            while True:
                reading = read()
                moment = reading - (reading - offset) % STEP
                if moment > last:
                    break
                following = last + STEP
                if following <= reading + self._resolution - 1:
                    # Within the tick of a coarse clock: the next free time.
                    moment = following
                    break
                if last - moment > self._resolution + STEP:
                    # The system clock was set back: start again from it.
                    break
                # The same microsecond as the last time: wait for the next.
            self._last = moment
            return moment

    def give_back(self, moment: int) -> None:
        """Take back a time this clock returned, if it was the last one.

        The caller must hold the only copy of it: the next call may return
        it again.  An earlier time is left alone (later ones were handed
        out since).

        :param moment: a time returned by calling the clock
        """
        with self._lock:
            if moment == self._last:
                self._last = moment - STEP


_python_clock = Clock()


def _load() -> Callable[[], int]:
    if os.environ.get('SPROCKETS_INFLUXDB_PURE_PYTHON', '') not in ('', '0'):
        return _python_clock
    try:
        from sprockets_influxdb import _speedups
    except ImportError:
        return _python_clock
    clock: Callable[[], int] | None = getattr(_speedups, 'now_ns', None)
    if clock is None:  # no clock_gettime() on this platform
        return _python_clock
    _speedups.configure_clock(_offset, _RESOLUTION)
    return clock


now_ns: Callable[[], int] = _load()

#: Whether :func:`now_ns` is the compiled clock (else a :class:`Clock`).
COMPILED = now_ns is not _python_clock


def _load_give_back() -> Callable[[int], None]:
    if not COMPILED:
        return _python_clock.give_back
    from sprockets_influxdb import _speedups

    return _speedups.give_back


_give_back = _load_give_back()


def give_back(moment: int) -> None:
    """Take back a time :func:`now_ns` returned, if it was the last one.

    The caller must hold the only copy of it: the next :func:`now_ns` may
    return it again.  An earlier time is left alone (later ones were
    handed out since).

    :param moment: a time :func:`now_ns` returned
    """
    _give_back(moment)


def _after_fork_in_child() -> None:
    global _offset
    # Its own discriminator, and no time taken yet on its own lattice.
    _offset = os.getpid() % STEP
    _python_clock.reset(_offset)
    if COMPILED:
        from sprockets_influxdb import _speedups

        _speedups.configure_clock(_offset, _RESOLUTION)


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_after_fork_in_child)
