"""Deliver at once when the process is told to stop.

A server that stops on a signal usually gets there through its own
handler, then the exit hooks deliver what is buffered.  Not always: a
handler can hang (gunicorn's gthread worker deadlocks when the terminal's
``SIGINT`` and the master's ``SIGQUIT`` arrive together, then is killed
when its graceful timeout ends), and what the writers held is lost.

So the handlers a host installed for ``SIGINT``, ``SIGTERM`` and
``SIGQUIT`` are wrapped: a writer is told first, without taking a lock
(the handler runs in the main thread, which may hold any of them), then
the host's handler runs as before.  A told writer sends what it holds at
once and, for :data:`HURRY_SECONDS`, what is added within
:data:`HURRY_INTERVAL`.

Only handlers set by the host are wrapped: the default ones are left as
they are (:func:`asyncio.run` installs its own only over Python's default
``SIGINT`` handler).  A handler set after the library's first use in the
main thread is not wrapped; the exit hooks still deliver through it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import types
import typing
import weakref

#: How long, in seconds, a writer told of a stop signal sends promptly.
HURRY_SECONDS = 30.0
#: The submission interval while it does, in seconds.
HURRY_INTERVAL = 0.05

_NAMES = ('SIGINT', 'SIGTERM', 'SIGQUIT')

Handler = typing.Callable[[int, typing.Optional[types.FrameType]], typing.Any]


class Hurried(typing.Protocol):
    """What is told of a stop signal."""

    def hurry(self) -> None:
        """Deliver now; called in a signal handler, so take no lock."""


_told: weakref.WeakSet[Hurried] = weakref.WeakSet()


def tell(writer: Hurried) -> None:
    """Have *writer* told when a stop signal arrives.

    :param writer: what to tell, for as long as it lives
    """
    _told.add(writer)


class _Wrapped:
    """The host's handler of a stop signal, the writers told first."""

    __slots__ = ('handler',)

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def __call__(self, signum: int, frame: types.FrameType | None) -> object:
        for writer in list(_told):
            # Never fail the host's handler; no log either (logging takes
            # locks the interrupted main thread may hold).
            with contextlib.suppress(Exception):
                writer.hurry()
        return self.handler(signum, frame)

    def __repr__(self) -> str:
        return f'<sprockets_influxdb stop signal handler: {self.handler!r}>'


def watch() -> None:
    """Wrap the host's stop signal handlers, in the main thread only.

    Wrapping twice does nothing; elsewhere than in the main thread,
    nothing happens (signal handlers can only be set there).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for name in _NAMES:
        signum = getattr(signal, name, None)
        if signum is None:  # pragma: no cover - not on Linux
            continue
        try:
            handler = signal.getsignal(signum)
            if (
                not callable(handler)
                or handler is signal.default_int_handler
                or isinstance(handler, _Wrapped)
            ):
                continue
            signal.signal(signum, _Wrapped(handler))
        except (ValueError, OSError, RuntimeError):  # pragma: no cover
            continue  # (another interpreter, or a signal not settable)
