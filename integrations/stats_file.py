"""Let a tool outside the process read the library's counters.

For tools that watch the example applications from outside (the soak,
``bench/soak.py``).  When the environment variable ``EXAMPLE_STATS_DIR``
names a directory, :func:`export` makes each process of the application
write :func:`sprockets_influxdb.stats` there as JSON:

* ``<pid>.json`` when the process exits (or ends by a SIGTERM it handled
  and raised again, as uvicorn does), once the library delivered what it
  could (a process that never recorded anything writes nothing);
* ``<pid>.killed.json`` on ``SIGUSR2``, after which the process kills itself
  with ``SIGKILL`` at once, as the OOM killer or a process manager would:
  no other thread runs between the snapshot and the kill (no thread switch
  is allowed, and nothing in between gives up the GIL), so what the process
  had not delivered when it died is exactly ``added - written - dropped``
  of that snapshot.

Without the variable, nothing is installed.  A gunicorn worker resets
``SIGUSR2`` when it starts: call :func:`handle_kill_signal` from its
``post_worker_init`` hook (``bench/soak_gunicorn.conf.py``).
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import mmap
import os
import signal
import sys
import time
import types

import sprockets_influxdb

VARIABLE = 'EXAMPLE_STATS_DIR'
_SIZE = 4096


def _snapshot() -> dict[str, object]:
    stats = sprockets_influxdb.stats()
    return {
        'pid': os.getpid(),
        **dataclasses.asdict(stats),
        'dropped': dict(stats.dropped),
        'encoded': dict(stats.encoded),
    }


def _write_at_exit(directory: str) -> None:
    client = sprockets_influxdb.default_client()
    stats = client.stats()
    if not stats.added:
        return
    if stats.buffered or stats.in_flight:
        # The library's own exit hook may run after this one.
        client.flush(5.0).result(6.0)
    path = os.path.join(directory, f'{os.getpid()}.json')
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump(_snapshot(), handle)


def _snapshot_and_die(directory: str) -> None:
    path = os.path.join(directory, f'{os.getpid()}.killed.json')
    # The file is prepared first: opening and sizing it gives up the GIL.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.ftruncate(fd, _SIZE)
    shared = mmap.mmap(fd, _SIZE)
    # From here on, no other thread may run: no forced switch (the sleep
    # lets the threads already waiting for the GIL with the old interval
    # take it and wait again with the new one), and every call after it
    # keeps the GIL (the copy into the mapping is a memcpy, os.kill does
    # not release it).
    sys.setswitchinterval(60.0)
    time.sleep(0.02)
    data = json.dumps(_snapshot()).encode()[:_SIZE]
    shared[: len(data)] = data
    os.kill(os.getpid(), signal.SIGKILL)


def _write_then_terminate(directory: str) -> None:
    # uvicorn ends by raising the SIGTERM it handled again, with the handler
    # found before it started: this one, so the process ends as it would
    # have, by SIGTERM, once the counters are written (no atexit then).
    def handler(signum: int, frame: types.FrameType | None) -> None:
        _write_at_exit(directory)
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, handler)


def handle_kill_signal() -> None:
    """Install the ``SIGUSR2`` handler (from the main thread), if exporting."""
    directory = os.environ.get(VARIABLE)
    if not directory:
        return

    def handler(signum: int, frame: types.FrameType | None) -> None:
        _snapshot_and_die(directory)

    signal.signal(signal.SIGUSR2, handler)


def export() -> None:
    """Write the counters at exit and on ``SIGUSR2``, if ``EXAMPLE_STATS_DIR``
    is set; otherwise do nothing."""
    directory = os.environ.get(VARIABLE)
    if not directory:
        return
    atexit.register(_write_at_exit, directory)
    _write_then_terminate(directory)
    handle_kill_signal()
