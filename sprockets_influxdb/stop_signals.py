"""Deliver at once when the process is told to stop.

A server that stops on a signal usually gets there through its own
handler, then the exit hooks deliver what is buffered.  Not always: a
handler can hang (gunicorn's gthread worker deadlocks when the terminal's
``SIGINT`` and the master's ``SIGQUIT`` arrive together, then is killed
when its graceful timeout ends), and what the writers held is lost.

So the handlers a host installed for ``SIGTERM`` and ``SIGQUIT``, and a
gunicorn worker's handler of ``SIGINT``, are wrapped: the writers are told
first, without taking a lock (the handler runs in the main thread, which
may hold any of them), then the host's handler runs as before, and the
host's choice of restarting the system calls a signal interrupts
(``signal.siginterrupt()``) is kept.  A told writer sends what it holds at
once and, for :data:`HURRY_SECONDS`, what is added within
:data:`HURRY_INTERVAL`.

Other handlers of ``SIGINT`` are left alone: event loop runners
(:func:`asyncio.run`, trio) install one of their own and put the default
back only if theirs is still there.  gunicorn's gthread worker needs its
own wrapped: a Ctrl-C that lands while the worker's main thread holds its
thread pool's lock (queueing a request) hangs the worker in that one
handler, before the master's ``SIGQUIT`` can run anything in the main
thread.  Only handlers set by the host are wrapped, never the defaults; a
handler set after the library's first use in the main thread is not
(see :func:`sprockets_influxdb.wsgi.post_worker_init` for gunicorn
``--preload``); without the compiled extension nothing is wrapped.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import types
import typing
import weakref

from sprockets_influxdb.measurement import _compiled

#: How long, in seconds, a writer told of a stop signal sends promptly.
HURRY_SECONDS = 30.0
#: The submission interval while it does, in seconds.
HURRY_INTERVAL = 0.05

_NAMES = ('SIGTERM', 'SIGQUIT', 'SIGINT')

Handler = typing.Callable[[int, typing.Optional[types.FrameType]], typing.Any]


class Hurried(typing.Protocol):
    """What is told of a stop signal."""

    def hurry(self) -> None:
        """Deliver now; called in a signal handler, so take no lock."""


# Weak references to what is told, each removing itself when its referent
# goes.  A set of references rather than a WeakSet: the handler copies it
# in one step, which another thread adding to it cannot interrupt.
_told: set[weakref.ref[Hurried]] = set()


def tell(writer: Hurried) -> None:
    """Have *writer* told when a stop signal arrives.

    :param writer: what to tell, for as long as it lives
    """
    _told.add(weakref.ref(writer, _told.discard))


def hurry_all() -> None:
    """Tell everything told of stop signals to deliver now.

    Takes no lock and never raises: it runs in signal handlers.
    """
    references: tuple[weakref.ref[Hurried], ...] = ()
    for _ in range(3):  # (a reference removed meanwhile: copied again)
        with contextlib.suppress(RuntimeError):
            references = tuple(_told)
            break
    for reference in references:
        writer = reference()
        if writer is not None:
            # No log either: logging takes locks the interrupted main
            # thread may hold.
            with contextlib.suppress(Exception):
                writer.hurry()


class _Wrapped:
    """The host's handler of a stop signal, the writers told first."""

    __slots__ = ('handler',)

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def __call__(self, signum: int, frame: types.FrameType | None) -> object:
        hurry_all()
        return self.handler(signum, frame)

    def __repr__(self) -> str:
        return f'<sprockets_influxdb stop signal handler: {self.handler!r}>'


def watch() -> None:
    """Wrap the host's stop signal handlers, in the main thread only.

    Wrapping twice does nothing; elsewhere than in the main thread, or
    without the compiled extension (which reads whether a handler restarts
    interrupted system calls), nothing happens.
    """
    restarts = getattr(_compiled, 'signal_restarts', None)
    if restarts is None:
        return
    if threading.current_thread() is not threading.main_thread():
        return
    for name in _NAMES:
        signum = getattr(signal, name, None)
        if signum is None:  # pragma: no cover - not on Linux
            continue
        try:
            handler = signal.getsignal(signum)
            if not callable(handler) or isinstance(handler, _Wrapped):
                continue
            if name == 'SIGINT' and not _of_gunicorn_worker(handler):
                continue
            restarting = restarts(signum)
            signal.signal(signum, _Wrapped(handler))
            if restarting:
                signal.siginterrupt(signum, False)
        except (ValueError, OSError, RuntimeError):  # pragma: no cover
            continue  # (another interpreter, or a signal not settable)


def _of_gunicorn_worker(handler: object) -> bool:
    """Whether *handler* is a method of a gunicorn worker.

    By the names of the modules of its classes: gunicorn is never imported
    here.
    """
    owner = getattr(handler, '__self__', None)
    return any(
        (getattr(cls, '__module__', '') or '').startswith('gunicorn.workers.')
        for cls in type(owner).__mro__
    )
