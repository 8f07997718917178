"""Import now what the writer thread would otherwise import on first use.

A process that forks while another of its threads is in the middle of an
import hands the child that module half initialised, for good: the child's
copy of the importing thread is gone and nothing finishes the import.  The
writer thread starts with the first measurement, and its first request
makes anyio import its event loop backend and asyncio its executor.  A
gunicorn ``--preload`` master that records a measurement at start-up and
forks its workers a few milliseconds later
would hand every worker a broken anyio, and no writer.

So the modules the writer needs are imported here, by whichever thread
imports the library, and the test suite checks that the writer thread
imports nothing, whatever it goes through (a write, a rejected line, an
unknown database, a refused connection, https, a host name, a shutdown).
"""

from __future__ import annotations

import importlib

__all__: list[str] = []

#: What the writer would otherwise import from its own thread.
EAGER = (
    # anyio.run(..., backend='asyncio') imports its backend on first use.
    'anyio._backends._asyncio',
    # The transport's HTTP/1.1 state machine.
    'h11',
    # asyncio's default executor, which resolves host names, and the codec
    # socket.getaddrinfo() encodes a host name with.
    'concurrent.futures.thread',
    'queue',
    'encodings.idna',
    # The default certificate authorities of https.
    'certifi',
)


def import_eagerly() -> None:
    """Import :data:`EAGER` and what its modules load on first use."""
    for name in EAGER:
        importlib.import_module(name)
    # certifi finds its bundle through importlib.resources, which imports
    # its readers the first time.
    importlib.import_module('certifi').where()
