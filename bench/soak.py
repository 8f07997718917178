"""Soak: the four example apps under load while InfluxDB fails, figures out.

Run it from the repository root, in the environment of ``.ci/bootstrap``::

    python bench/soak.py            # 300 requests/s per app, 3 x 60 s each
    python bench/soak.py --quick    # the four at once, for 15 s (.ci/run)

It starts a throwaway influxd (``tests/servers.py``; at nice 19, so that
its bursts of work do not take the apps' cores: in production it runs on
hosts of its own), a loopback fault
proxy in front of it (``bench/_soak_proxy.py``), and serves the four example
applications of ``integrations/`` under their real servers, each writing to
its own database through the proxy: Tornado with its own server, Starlette
and FastAPI under uvicorn (``python integrations/<app>.py``), Flask under
gunicorn ``--preload`` with 2 gthread workers (8 threads each).  Each is
also served without the integration (``bench/_soak_bare.py``), the same
way.

One load generator process per app (``bench/_soak_load.py``) sends
requests to it and to the same app without the integration at the same
rate (``--rate``, 300/s to each by default), alternating, the same route
to both: plain route 45%, path parameter 35%, unrouted (404) 10%, uncaught
exception (500) 5%, a response streamed in three chunks 0.1 s apart 5%.
The schedule is open (a slow answer never delays the next request) and a
latency is counted from when the request was due, not from when it was
sent; the generator's own CPU and lateness are reported.  Meanwhile, on a
schedule (times for 60 s; ``--quick`` scales times and durations to its
15 s):

* at 8 s influxd is killed with SIGKILL, and started again 5 s later;
* at 20 s influxd is frozen with SIGSTOP, and resumed with SIGCONT 3 s later;
* at 30 s the proxy answers 503 with ``Retry-After: 1`` for 5 s, then 429
  for 5 s;
* at 46 s one gunicorn worker of the Flask app is killed with SIGKILL
  (gunicorn starts another): the worker writes its ``stats()`` just
  before (``integrations/stats_file.py``), so that what it had not yet
  delivered is known exactly.

The full run goes through the schedule three times (``--cycles``), one
cycle after the other; the figures of each fault are pooled over its
occurrences.  It serves the apps one after the other, each through its
own cycles with the machine to itself (``--one-at-a-time``): the four at
once, with and without the library, ask two cores for 2,400 requests/s,
more than they have, and their latencies are then queues of seconds.
``--quick`` serves the four at once (``--together``), which is shorter
and puts the most load on the library's delivery.

After the load, the soak waits for the apps to deliver (their settings:
``INFLUXDB_INTERVAL=1000``, the rest the defaults), stops them with SIGTERM
and prints one table: requests answered against points stored, by status;
points lost; RSS of the app's processes at start (before the load), peak,
end (after delivery, before SIGTERM); latency p50/p99/max of the requests
(the streamed one left out: its pauses are its own), with and without the
library, healthy and in each fault's window, with the number of requests
each rests on; the ratios; when each backlog was stored; the apps'
``stats()`` at exit; the CPU the apps and the generator used.

A fault's window runs from the fault's start until the points of every
request the app had answered when the fault ended are stored (the proxy
sees each write influxd accepts): the backlog the fault caused is then
delivered, so the window holds the outage and the library's catching up,
however long its backoff made that.  A fixed span after the fault would
miss a resend that the backoff (up to 30 s) put later.  A window holding
fewer than 1,000 timed requests (250 with ``--quick``) is lengthened
until it does, so that its p99 rests on at least 10 requests above it;
windows never run into the next fault.  Healthy is the rest, after the
first second.

It fails (exit status 1) when a point is lost other than those the killed
worker had not delivered, or when an app's RSS at the end exceeds its start
by more than 50 MB.  Latency ratios are reported, never a failure (two
shared cores make them noisy); the full run also says whether each
acceptance item of issue 13 holds.  ``--profile DIRECTORY`` records the
apps with py-spy, healthy and in each fault (``bench/_soak_profile.py``
reads it), ``--samples FILE`` writes every request's figures.
"""

from __future__ import annotations

import argparse
import bisect
import concurrent.futures
import contextlib
import glob
import itertools
import json
import multiprocessing
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
for _path in (ROOT, BENCH):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from _soak_load import STREAM, WITH, WITHOUT, Sample, drive  # noqa: E402
from _soak_proxy import FaultProxy  # noqa: E402

from tests.helpers import clean_environment  # noqa: E402
from tests.servers import (  # noqa: E402
    InfluxServer,
    free_port,
    listens,
)

PY = sys.executable
GUNICORN = [
    PY, '-m', 'gunicorn', '--preload', '--workers', '2',
    '--worker-class', 'gthread', '--threads', '8',
    '--bind', '127.0.0.1:{port}', '--log-level', 'warning',
    '--config', 'bench/soak_gunicorn.conf.py',
]  # fmt: skip
APPS: dict[str, dict[str, list[str]]] = {
    'tornado': {
        'with': [PY, 'integrations/tornado_app.py', '--port', '{port}'],
        'bare': [PY, 'bench/_soak_bare.py', 'tornado', '--port', '{port}'],
    },
    'starlette': {
        'with': [PY, 'integrations/starlette_app.py', '--port', '{port}'],
        'bare': [PY, 'bench/_soak_bare.py', 'starlette', '--port', '{port}'],
    },
    'fastapi': {
        'with': [PY, 'integrations/fastapi_app.py', '--port', '{port}'],
        'bare': [PY, 'bench/_soak_bare.py', 'fastapi', '--port', '{port}'],
    },
    'flask': {
        'with': [*GUNICORN, 'integrations.flask_app:app'],
        'bare': [*GUNICORN, 'bench._soak_bare:flask_app'],
    },
}
# (name, start, duration) in seconds of a 60 s run.
SCHEDULE = [
    ('influxd killed', 8.0, 5.0),
    ('influxd frozen', 20.0, 3.0),
    ('503 then 429', 30.0, 10.0),
    ('worker killed', 46.0, 0.0),
]
OUTAGES = ('influxd killed', 'influxd frozen', '503 then 429')
RSS_LIMIT_MB = 50.0
# Requests a window's p99 rests on at least (a quarter with --quick).
MIN_SAMPLES = 1000
# The generator's p99 lateness (from when a request was due to when it
# was sent) beyond which the run says the machine did not keep up.
LATE = 0.05
# The healthy median latency beyond which the apps were queueing: a
# trivial route answers in a few milliseconds on an idle core.
QUEUED = 0.05
MEASUREMENT = 'request'


def say(text: str) -> None:
    """Print a paragraph of the report, wrapped."""
    print(textwrap.fill(text, 100))


def log(message: str, started: float | None = None) -> None:
    stamp = f'[{time.monotonic() - started:6.1f} s] ' if started else ''
    print(f'{stamp}{message}', flush=True)


# -- processes --------------------------------------------------------------


# The ports given to the applications of this run: two must never share
# one (a server that cannot bind retries for a while, and the other one's
# answers would be counted as its own).
_PORTS: set[int] = set()


class App:
    """One application served in its own session (process group)."""

    def __init__(
        self, name: str, variant: str, directory: str, env: dict[str, str]
    ) -> None:
        self.name = name
        self.variant = variant
        self.log_path = os.path.join(directory, f'{name}-{variant}.log')
        self.env = env
        self._start()

    def _start(self) -> None:
        """Start it on a port no other application of the run has."""
        port = free_port()
        while port in _PORTS:
            port = free_port()
        _PORTS.add(port)
        self.port = port
        name, variant, env = self.name, self.variant, self.env
        command = [
            part.replace('{port}', str(self.port))
            for part in APPS[name][variant]
        ]
        with open(self.log_path, 'w') as output:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def accepting(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(
                f'{self.name} ({self.variant}) exited:\n{self.log_tail()}'
            )
        try:
            socket.create_connection(('127.0.0.1', self.port), 0.2).close()
        except OSError:
            return False
        # Whoever answers must be this application, not another process
        # that took the port first.
        if not listens(self.process.pid, self.port):
            # Another process took the port between free_port() and the
            # bind: start again elsewhere.
            print(
                f'{self.name} ({self.variant}): port {self.port} taken by '
                'another process; starting it on another port',
                flush=True,
            )
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self._start()
            return False
        return True

    def log_tail(self, lines: int = 30) -> str:
        with open(self.log_path, errors='replace') as handle:
            return ''.join(handle.readlines()[-lines:])

    def pids(self) -> list[int]:
        """The processes of its session: the server and its workers."""
        found = []
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                with open(f'/proc/{entry}/stat') as handle:
                    fields = handle.read().rpartition(')')[2].split()
            except OSError:
                continue
            if int(fields[3]) == self.process.pid and fields[0] != 'Z':
                found.append(int(entry))
        return found

    def workers(self) -> list[int]:
        """Its server's child processes (gunicorn's workers)."""
        children = []
        for pid in self.pids():
            try:
                with open(f'/proc/{pid}/stat') as handle:
                    fields = handle.read().rpartition(')')[2].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                children.append(pid)
        return children

    def cpu_seconds(self) -> float:
        """CPU time of its processes so far (their reaped children's too)."""
        ticks = 0
        for pid in self.pids():
            try:
                with open(f'/proc/{pid}/stat') as handle:
                    fields = handle.read().rpartition(')')[2].split()
            except OSError:
                continue
            ticks += sum(int(value) for value in fields[11:15])
        return ticks / os.sysconf('SC_CLK_TCK')

    def rss_mb(self) -> float:
        total = 0
        page = os.sysconf('SC_PAGE_SIZE')
        for pid in self.pids():
            try:
                with open(f'/proc/{pid}/statm') as handle:
                    total += int(handle.read().split()[1]) * page
            except OSError:
                continue
        return total / 2**20

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f'{self.name} ({self.variant}) ignored SIGTERM: killed')
        # Whatever is left of its session (workers included).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


class RSS:
    """Sample the RSS of each app (with the library) every 0.25 s."""

    def __init__(self, apps: dict[str, App]) -> None:
        self.apps = apps
        self.start = {name: app.rss_mb() for name, app in apps.items()}
        self.peak = dict(self.start)
        self.end: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self.sample()

    def sample(self) -> dict[str, float]:
        now = {name: app.rss_mb() for name, app in self.apps.items()}
        for name, value in now.items():
            self.peak[name] = max(self.peak[name], value)
        return now

    def finish(self) -> None:
        self._stop.set()
        self._thread.join()
        self.end = self.sample()


# -- faults -----------------------------------------------------------------


class Faults:
    """Apply the schedule; remember when each fault really started and
    ended (seconds from the start of the load)."""

    def __init__(
        self,
        server: InfluxServer,
        proxy: FaultProxy,
        flask: App | None,
        stats_dir: str,
        start: float,
        scale: float,
        cycles: int = 1,
    ) -> None:
        self.server = server
        self.proxy = proxy
        self.flask = flask
        self.stats_dir = stats_dir
        self.start = start
        self.scale = scale
        self.cycles = cycles
        # The occurrences of each fault, one per cycle: (start, end).
        self.windows: dict[str, list[tuple[float, float]]] = {}
        # The last stats() of each worker killed, one per cycle.
        self.killed: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.cycle = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _at(self, offset: float) -> float:
        """Sleep until *offset* seconds of the current cycle's schedule."""
        offset += 60.0 * self.cycle
        delay = self.start + offset * self.scale - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return time.monotonic() - self.start

    def say(self, message: str) -> None:
        log(f'[{time.monotonic() - self.start:5.1f} s] {message}')

    def _run(self) -> None:
        try:
            for cycle in range(self.cycles):
                self.cycle = cycle
                self._apply()
        except Exception as error:  # reported, and the run fails
            self.errors.append(f'fault schedule: {error!r}')
            self.proxy.set_fault(None)
            if self.server.frozen:
                self.server.thaw()

    def _occurred(self, name: str, began: float) -> None:
        """Note an occurrence of a fault, from *began* until now."""
        ended = time.monotonic() - self.start
        self.windows.setdefault(name, []).append((began, ended))

    def _apply(self) -> None:
        (
            (_, kill_at, down),
            (_, freeze_at, frozen),
            (_, proxy_at, shed),
            (
                _,
                worker_at,
                _,
            ),
        ) = SCHEDULE
        began = self._at(kill_at)
        pid = self.server.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        self.server.stop()  # reaps it
        self.say(
            f'influxd killed with SIGKILL; back in {down * self.scale:g} s'
        )
        self._at(kill_at + down)
        self.server.start()
        self._occurred('influxd killed', began)
        self.say('influxd started again')

        began = self._at(freeze_at)
        self.server.freeze()
        self.say(f'influxd frozen (SIGSTOP) for {frozen * self.scale:g} s')
        self._at(freeze_at + frozen)
        self.server.thaw()
        self._occurred('influxd frozen', began)
        self.say('influxd resumed (SIGCONT)')

        began = self._at(proxy_at)
        self.proxy.set_fault(503, retry_after=1)
        self.say(
            f'proxy answers 503 (Retry-After: 1) for '
            f'{shed / 2 * self.scale:g} s'
        )
        self._at(proxy_at + shed / 2)
        self.proxy.set_fault(429, retry_after=1)
        self.say(
            f'proxy answers 429 (Retry-After: 1) for '
            f'{shed / 2 * self.scale:g} s'
        )
        self._at(proxy_at + shed)
        self.proxy.set_fault(None)
        self._occurred('503 then 429', began)
        self.say('proxy relays to influxd again')

        if self.flask is None:
            return
        began = self._at(worker_at)
        workers = self.flask.workers()
        if not workers:
            raise RuntimeError('no gunicorn worker to kill')
        victim = workers[0]
        os.kill(victim, signal.SIGUSR2)
        path = os.path.join(self.stats_dir, f'{victim}.killed.json')
        deadline = time.monotonic() + 5
        while os.path.exists(f'/proc/{victim}/stat') and (
            time.monotonic() < deadline
        ):
            time.sleep(0.01)
        with open(path, 'rb') as handle:
            killed = json.loads(handle.read().rstrip(b'\0'))
        self.killed.append(killed)
        self._occurred('worker killed', began)
        undelivered = undelivered_at_kill(killed)
        self.say(
            f'gunicorn worker {victim} killed with SIGKILL, '
            f'{undelivered} measurements not yet delivered'
        )


def profile_spans(scale: float) -> list[tuple[str, float, float]]:
    """``(label, start, seconds)`` of the py-spy recordings of ``--profile``:
    healthy before the first fault and after the last, each fault from its
    start to 5 s after its end (never into the next)."""
    spans = [('healthy', 1.0, SCHEDULE[0][1] - 1.5)]
    for index, (name, first, length) in enumerate(SCHEDULE):
        after = SCHEDULE[index + 1][1] if index + 1 < len(SCHEDULE) else 60
        spans.append((name, first, min(length + 5, after - first - 0.5)))
    spans.append(('healthy after', 52.0, 7.0))
    return [(label, first * scale, length * scale)
            for label, first, length in spans]  # fmt: skip


class Profiler:
    """Record the apps with the library with py-spy, one recording per
    span of :func:`profile_spans`: only the samples of threads holding the
    GIL, without pausing the app (``--nonblocking``), as collapsed stacks
    (``bench/_soak_profile.py`` reads them)."""

    def __init__(
        self, apps: dict[str, App], directory: str, start: float, scale: float
    ) -> None:
        self.apps = apps
        self.directory = directory
        self.start = start
        self.spans = profile_spans(scale)
        os.makedirs(directory, exist_ok=True)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        spy = shutil.which('py-spy') or 'py-spy'
        for index, (label, first, length) in enumerate(self.spans):
            delay = self.start + first - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            running = []
            for name, app in self.apps.items():
                path = os.path.join(self.directory, f'{name}.{index}')
                with open(f'{path}.log', 'w') as output:
                    running.append(subprocess.Popen(
                        [spy, 'record', '--pid', str(app.process.pid),
                         '--subprocesses', '--threads', '--gil',
                         '--nonblocking', '--format', 'raw',
                         '--rate', '200', '--duration',
                         str(max(1, round(length))),
                         '--output', f'{path}.txt'],
                        stdout=output,
                        stderr=subprocess.STDOUT,
                    ))  # fmt: skip
                with open(f'{path}.span', 'w') as handle:
                    handle.write(f'{label}\n{max(1, round(length))}\n')
            for process in running:
                process.wait()


def niced_influxd(directory: str) -> str:
    """A script that runs influxd at the lowest CPU priority (nice 19).

    In production InfluxDB runs on hosts of its own; here it shares two
    cores with the apps, and its bursts of work (catching up after SIGCONT,
    a restart, compactions) would take the cores from the apps with and
    without the library alike, the apps' latency then saying more about
    influxd than about the library.  ``exec`` keeps the process id, which
    the faults signal.
    """
    influxd = shutil.which('influxd') or 'influxd'
    path = os.path.join(directory, 'influxd-niced')
    with open(path, 'w', encoding='utf-8') as script:
        command = f'exec nice -n 19 {shlex.quote(influxd)} "$@"'
        script.write(f'#!/bin/sh\n{command}\n')
    os.chmod(path, 0o755)
    return path


def machine_busy() -> tuple[float, float, float | None]:
    """Seconds of CPU busy and in all, summed over the machine's cores, and
    seconds some task waited for a core (``None`` without Linux's PSI)."""
    with open('/proc/stat') as handle:
        values = [int(value) for value in handle.readline().split()[1:9]]
    idle = values[3] + values[4]
    tick = os.sysconf('SC_CLK_TCK')
    waited = None
    with (
        contextlib.suppress(OSError, ValueError, IndexError),
        open('/proc/pressure/cpu') as handle,
    ):
        waited = int(handle.readline().rsplit('total=', 1)[1]) / 1e6
    return (sum(values) - idle) / tick, sum(values) / tick, waited


def undelivered_at_kill(stats: dict[str, Any]) -> int:
    """What a worker had added and neither delivered nor dropped."""
    return int(
        stats['added'] - stats['written'] - sum(stats['dropped'].values())
    )


# -- figures ----------------------------------------------------------------


def stored(server: InfluxServer, database: str) -> Counter[int]:
    payload = server.query(
        f'SELECT COUNT("duration") FROM "{MEASUREMENT}" '
        'GROUP BY "status_code"',
        db=database,
    )
    counts: Counter[int] = Counter()
    for series in payload['results'][0].get('series', []):
        counts[int(series['tags']['status_code'])] = int(
            series['values'][0][1]
        )
    return counts


def percentiles(
    values: list[float], minimum: int
) -> tuple[float, float, float] | None:
    """p50, p99 and max in milliseconds; ``None`` under *minimum* values."""
    if len(values) < max(minimum, 2):
        return None
    ordered = sorted(values)
    quantiles = statistics.quantiles(ordered, n=100, method='inclusive')
    return quantiles[49] * 1e3, quantiles[98] * 1e3, ordered[-1] * 1e3


def latency_cell(figures: tuple[float, float, float] | None) -> str:
    if figures is None:
        return 'too few'
    return '/'.join(f'{value:.1f}' if value < 100 else f'{value:.0f}'
                    for value in figures)  # fmt: skip


def read_stats(directory: str) -> dict[str, Any]:
    """The apps' counters at exit, summed over its processes (the killed
    worker's at its death)."""
    total: dict[str, Any] = {
        'written': 0,
        'retries': 0,
        'failed_requests': 0,
        'requests': 0,
        'dropped': Counter(),
        'processes': 0,
    }
    for path in glob.glob(os.path.join(directory, '*.json')):
        with open(path, 'rb') as handle:
            stats = json.loads(handle.read().rstrip(b'\0'))
        total['processes'] += 1
        for key in ('written', 'retries', 'failed_requests', 'requests'):
            total[key] += stats[key]
        total['dropped'].update(stats['dropped'])
    return total


def fault_windows(
    faults: dict[str, list[tuple[float, float]]],
    samples: list[Sample],
    deliveries: list[tuple[float, int]],
    allowance: dict[str, list[int]],
    minimum: int,
    end: float,
) -> dict[str, list[tuple[float, float, str, float | None]]]:
    """The windows of each fault for one app, one per occurrence:
    ``(start, end, why, caught)``.

    A window opens when its fault starts and closes when the points of
    every request the app had answered when the fault ended are stored
    (*deliveries*: when influxd answered a write of the app, and how many
    lines it held): the backlog the fault caused is then delivered, and
    with it the work the library does to catch up.  A window holding
    fewer than *minimum* timed requests, to the app with the library or
    to the one without, is lengthened until it holds that many of each
    (never into the next fault), so that its p99 rests on at least
    ``minimum / 100`` requests above it.  Seconds from the start of the
    load; *caught* is how long after the fault's end the backlog was
    stored (``None``: never, in the load's time).

    :param allowance: points the app may never deliver, by fault (the
        killed workers', all its occurrences until the one at hand
        included)
    """
    timed = [
        sorted(
            due for due, target, route, status, _, _ in samples
            if target == which and route != STREAM and status
        )
        for which in (WITH, WITHOUT)
    ]  # fmt: skip
    done = sorted(
        due + latency for due, target, _, status, latency, _ in samples
        if target == WITH and status
    )  # fmt: skip
    cumulative = list(itertools.accumulate(lines for _, lines in deliveries))
    starts = sorted(
        first for occurrences in faults.values() for first, _ in occurrences
    )
    windows: dict[str, list[tuple[float, float, str, float | None]]] = {}
    for name, first, last, allowed in (
        (name, first, last, allowance.get(name, [0] * len(occurrences))[index])
        for name, occurrences in faults.items()
        for index, (first, last) in enumerate(occurrences)
    ):
        needed = bisect.bisect_right(done, last) - allowed
        index = bisect.bisect_left(cumulative, needed)
        if index < len(cumulative):
            closes, why = max(deliveries[index][0], last), 'delivered'
            caught: float | None = closes - last
        else:
            closes, why, caught = end, 'never delivered', None
        later = [start for start in starts if start > first]
        limit = min([end, *later])
        for dues in timed:
            at = bisect.bisect_left(dues, first)
            if at + minimum - 1 < len(dues):
                enough = dues[at + minimum - 1]
                if enough > closes:
                    closes, why = enough, f'lengthened to {minimum} requests'
        if closes > limit:
            closes, why = limit, 'cut at the next fault'
        windows.setdefault(name, []).append((first, closes, why, caught))
    return windows


def _verdict(ratios: list[float | None]) -> bool | None:
    """Whether every ratio is at most 2 (``None``: one was not measured)."""
    if any(ratio is not None and ratio > 2.0 for ratio in ratios):
        return False
    if any(ratio is None for ratio in ratios):
        return None
    return True


class Served:
    """What one group of apps served together left: per app, the requests
    the generator counted, the points stored, the stats, the RSS; and the
    faults, the CPU and how busy the machine was during their load."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.samples: dict[str, list[Sample]] = {}
        self.loads: dict[str, dict[str, Any]] = {}
        self.answered: dict[str, Counter[int]] = {}
        self.final: dict[str, Counter[int]] = {}
        self.stats: dict[str, dict[str, Any]] = {}
        self.deliveries: dict[str, list[tuple[float, int]]] = {}
        self.cpu: dict[tuple[str, str], float] = {}
        self.allowance: dict[str, int] = {name: 0 for name in names}
        # What the killed workers had not delivered, each kill's added to
        # those before it.
        self.killed_allowance: list[int] = []
        self.windows: dict[str, list[tuple[float, float]]] = {}
        self.errors: list[str] = []
        self.rss_start: dict[str, float] = {}
        self.rss_peak: dict[str, float] = {}
        self.rss_end: dict[str, float] = {}
        self.busy = 0.0
        self.pressure: float | None = None


def serve(
    names: list[str],
    server: InfluxServer,
    proxy: FaultProxy,
    directory: str,
    arguments: argparse.Namespace,
    scale: float,
    cycles: int,
    began: float,
) -> Served:
    """Serve the apps *names* at once, with and without the library, drive
    them through the schedule of faults, wait for their points and stop
    them."""
    total = scale * 60.0 * cycles
    result = Served(names)
    apps: dict[str, App] = {}
    bare: dict[str, App] = {}
    try:
        for name in names:
            server.create_database(name)
            os.mkdir(os.path.join(directory, f'stats-{name}'))
            apps[name] = App(
                name,
                'with',
                directory,
                clean_environment(
                    INFLUXDB_URL=proxy.url,
                    INFLUXDB_INTERVAL='1000',
                    REQUEST_DATABASE=name,
                    SERVICE=MEASUREMENT,
                    EXAMPLE_STATS_DIR=os.path.join(directory, f'stats-{name}'),
                ),
            )
            bare[name] = App(
                name,
                'bare',
                directory,
                clean_environment(INFLUXDB_ENABLED='false'),
            )
        deadline = time.monotonic() + 90
        for app in [*apps.values(), *bare.values()]:
            while not app.accepting():
                if time.monotonic() > deadline:
                    raise RuntimeError(f'{app.name} ({app.variant}) not up')
                time.sleep(0.05)
        if 'flask' in names and (
            len(apps['flask'].workers()) < 2
            or len(bare['flask'].workers()) < 2
        ):
            time.sleep(1.0)
        log(f'{", ".join(names)}: {2 * len(names)} servers up', began)
        rss = RSS(apps)

        context = multiprocessing.get_context('spawn')
        start = time.monotonic() + 3.0
        count = int(arguments.rate * total)
        with concurrent.futures.ProcessPoolExecutor(
            len(names), mp_context=context
        ) as pool:
            futures = {
                name: pool.submit(
                    drive,
                    {
                        'seed': arguments.seed + list(APPS).index(name),
                        'rate': arguments.rate,
                        'count': count,
                        'port': apps[name].port,
                        'bare_port': bare[name].port,
                        'start': start,
                    },
                )
                for name in names
            }
            faults = Faults(
                server,
                proxy,
                apps.get('flask'),
                os.path.join(directory, 'stats-flask'),
                start,
                scale,
                cycles,
            )
            profiler = (
                Profiler(apps, arguments.profile, start, scale)
                if arguments.profile
                else None
            )
            log('load starts', began)
            faults.thread.start()
            time.sleep(max(0.0, start - time.monotonic()))
            cpu_before = {
                (name, variant): app.cpu_seconds()
                for variant, group in (('with', apps), ('bare', bare))
                for name, app in group.items()
            }
            busy_before = machine_busy()
            loads = {name: future.result() for name, future in futures.items()}
            faults.thread.join()
            busy_after = machine_busy()
            if profiler is not None:
                profiler.thread.join()
            result.cpu = {
                (name, variant): app.cpu_seconds() - cpu_before[name, variant]
                for variant, group in (('with', apps), ('bare', bare))
                for name, app in group.items()
            }
        log('load ended', began)
        result.busy = (busy_after[0] - busy_before[0]) / (
            busy_after[1] - busy_before[1]
        )
        result.pressure = (
            (busy_after[2] - busy_before[2])
            / (busy_after[1] - busy_before[1])
            * (os.cpu_count() or 1)
            if busy_after[2] is not None and busy_before[2] is not None
            else None
        )
        result.loads = loads
        result.samples = {
            name: load['samples'] for name, load in loads.items()
        }
        result.windows = faults.windows
        result.errors = faults.errors
        for name, samples in result.samples.items():
            result.answered[name] = Counter(
                sample[3] for sample in samples if sample[1] == WITH
            )
        result.killed_allowance = list(
            itertools.accumulate(
                undelivered_at_kill(killed) for killed in faults.killed
            )
        )
        if result.killed_allowance:
            result.allowance['flask'] = result.killed_allowance[-1]

        def missing(name: str) -> int:
            counts = stored(server, name)
            return sum(
                max(0, number - counts[status])
                for status, number in result.answered[name].items()
                if status
            )

        deadline = time.monotonic() + max(10.0, 30.0 * scale * 2)
        waiting = set(names)
        while waiting and time.monotonic() < deadline:
            waiting = {
                name
                for name in waiting
                if missing(name) > result.allowance[name]
            }
            if waiting:
                time.sleep(0.5)
        log(
            'delivered while running: '
            + ('all' if not waiting else f'not yet for {sorted(waiting)}'),
            began,
        )
        rss.finish()
        result.rss_start, result.rss_peak = rss.start, rss.peak
        result.rss_end = rss.end
        stopping = [
            threading.Thread(target=app.stop)
            for app in [*apps.values(), *bare.values()]
        ]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()
        log('apps stopped (SIGTERM)', began)
        result.final = {name: stored(server, name) for name in names}
        result.stats = {
            name: read_stats(os.path.join(directory, f'stats-{name}'))
            for name in names
        }
        result.deliveries = {
            name: [
                (when - start, lines)
                for when, database, lines in proxy.delivered
                if database == name
            ]
            for name in names
        }
    finally:
        for app in [*apps.values(), *bare.values()]:
            app.stop(timeout=5)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='15 s, for CI')
    parser.add_argument(
        '--duration', type=float, help='seconds of load per cycle'
    )
    parser.add_argument(
        '--cycles',
        type=int,
        help='times the schedule of faults runs, one after the other '
        '(default 3; 1 with --quick)',
    )
    parser.add_argument(
        '--rate',
        type=float,
        default=300.0,
        help='requests/s to each app, and as many to the same app without '
        'the library, alternating (default 300)',
    )
    parser.add_argument('--seed', type=int, default=13)
    serving = parser.add_mutually_exclusive_group()
    serving.add_argument(
        '--together',
        dest='together',
        action='store_true',
        default=None,
        help='serve all the apps at once (the default with --quick)',
    )
    serving.add_argument(
        '--one-at-a-time',
        dest='together',
        action='store_false',
        help='serve the apps one after the other, each with the machine '
        'to itself and its own faults (the default of the full run)',
    )
    parser.add_argument(
        '--apps',
        default=','.join(APPS),
        help='the apps to serve, comma separated (default all; the worker '
        'is killed only with flask)',
    )
    parser.add_argument(
        '--profile',
        metavar='DIRECTORY',
        help='record the apps with the library with py-spy into '
        'DIRECTORY, healthy and in each fault of the first cycle (read '
        'it with bench/_soak_profile.py)',
    )
    parser.add_argument(
        '--samples',
        metavar='FILE',
        help='write every request (due, target, route, status, latency, '
        'lateness) and the windows to FILE, as JSON',
    )
    arguments = parser.parse_args()
    names = arguments.apps.split(',')
    unknown = sorted(set(names) - set(APPS))
    if unknown:
        parser.error(f'unknown apps: {", ".join(unknown)}')
    for name in list(APPS):
        if name not in names:
            del APPS[name]
    duration = arguments.duration or (15.0 if arguments.quick else 60.0)
    scale = duration / 60.0
    cycles = arguments.cycles
    if cycles is None:
        cycles = 1 if arguments.quick else 3
    if cycles < 1:
        parser.error('--cycles must be at least 1')
    total = duration * cycles
    minimum = MIN_SAMPLES if not arguments.quick else MIN_SAMPLES // 4
    together = arguments.together
    if together is None:
        together = arguments.quick or len(APPS) == 1
    began = time.monotonic()
    print(
        f'soak: {len(APPS)} apps, {arguments.rate:g} requests/s to each, '
        f'with the library and without it, for {total:g} s '
        + ('all at once' if together else 'each, one app at a time')
        + f'; faults at {scale:g}x the 60 s schedule'
        + (f', {cycles} times over' if cycles > 1 else ''),
        flush=True,
    )

    directory = tempfile.mkdtemp(prefix='soak-')
    groups = [list(APPS)] if together else [[name] for name in APPS]
    served: dict[str, Served] = {}
    try:
        for group in groups:
            # A fresh influxd for each group: a restarted influxd replays
            # its write-ahead log, and one that kept the points of the
            # groups before would make each restart longer than the last,
            # for the later apps only.
            server = InfluxServer(executable=niced_influxd(directory))
            proxy: FaultProxy | None = None
            try:
                server.start()
                proxy = FaultProxy(server.port).start()
                result = serve(
                    group, server, proxy, directory, arguments, scale,
                    cycles, began,
                )  # fmt: skip
            finally:
                if proxy is not None:
                    proxy.close()
                server.close()
            for name in group:
                served[name] = result
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        log('everything stopped', began)

    # -- the table -----------------------------------------------------------
    warm = 1.0
    verdicts: dict[str, dict[str, bool | None]] = {name: {} for name in APPS}
    cells: dict[str, dict[str, Any]] = {name: {} for name in APPS}
    statuses = (200, 404, 500)
    dumped: dict[str, Any] = {}
    late: dict[str, float] = {}
    medians: dict[str, float] = {}
    for name in APPS:
        run = served[name]
        got, kept = run.answered[name], run.final[name]
        lost = sum(
            max(0, number - kept[status])
            for status, number in got.items()
            if status
        )
        outside = max(0, lost - run.allowance[name])
        extra = sum(
            max(0, number - got[status]) for status, number in kept.items()
        )
        samples = run.samples[name]
        windows = fault_windows(
            run.windows,
            samples,
            run.deliveries[name],
            {'worker killed': run.killed_allowance} if name == 'flask' else {},
            minimum,
            total,
        )
        dumped[name] = {'samples': samples, 'windows': windows,
                        'deliveries': run.deliveries[name]}  # fmt: skip

        def window_of(
            due: float, windows: dict[str, Any] = windows
        ) -> str | None:
            for fault, occurrences in windows.items():
                for first, last, _, _ in occurrences:
                    if first <= due <= last:
                        return fault
            return None

        timed: dict[tuple[str | None, int], list[float]] = {}
        for due, target, route, status, latency, _ in samples:
            if route == STREAM or not status or due < warm:
                continue
            key = (window_of(due), target)
            timed.setdefault(key, []).append(latency)
        figures = {
            key: percentiles(values, minimum) for key, values in timed.items()
        }
        cell = cells[name]
        for fault in (None, *run.windows):
            label = fault or 'healthy'
            for target in (WITH, WITHOUT):
                cell[(label, target)] = latency_cell(
                    figures.get((fault, target))
                )
            count = len(timed.get((fault, WITH), []))
            if fault is None:
                cell[(label, 'n')] = f'{count}'
                continue
            occurrences = windows[fault]
            seconds = sum(last - first for first, last, _, _ in occurrences)
            cell[(label, 'n')] = f'{count}, {seconds:.1f} s' + (
                ''
                if all(why == 'delivered' for _, _, why, _ in occurrences)
                else ' *'
            )
        base = figures.get((None, WITH))
        bare_base = figures.get((None, WITHOUT))
        ratios = []
        controls = []
        for fault in OUTAGES:
            during = figures.get((fault, WITH))
            ratios.append(during[1] / base[1] if during and base else None)
            bare_during = figures.get((fault, WITHOUT))
            controls.append(
                bare_during[1] / bare_base[1]
                if bare_during and bare_base
                else None
            )
        excess = [
            ratio / control if ratio and control else None
            for ratio, control in zip(ratios, controls)
        ]
        # The longest catching up of each outage's occurrences.
        caught: list[float | None] = []
        for fault in OUTAGES:
            whens = [when for _, _, _, when in windows.get(fault, [])]
            known = [when for when in whens if when is not None]
            caught.append(
                max(known) if known and len(known) == len(whens) else None
            )
        growth = run.rss_end[name] - run.rss_start[name]
        lags = sorted(sample[5] for sample in samples)
        load = run.loads[name]
        cell.update({
            'answered': '/'.join(str(got[s]) for s in statuses),
            'other': str(sum(n for s, n in got.items() if s not in statuses)),
            'stored': '/'.join(str(kept[s]) for s in statuses),
            'extra': str(extra),
            'lost': str(lost),
            'allowance': str(run.allowance[name])
            if name == 'flask'
            else '-',
            'outside': str(outside),
            'rss': f'{run.rss_start[name]:.0f}/{run.rss_peak[name]:.0f}/'
            f'{run.rss_end[name]:.0f}',
            'growth': f'{growth:+.1f}',
            'cost': (
                f'{base[0] / bare_base[0]:.2f}/{base[1] / bare_base[1]:.2f}'
                if base and bare_base
                else '-'
            ),
            'outage': '/'.join(
                '-' if ratio is None else f'{ratio:.2f}' for ratio in ratios
            ),
            'control': '/'.join(
                '-' if ratio is None else f'{ratio:.2f}' for ratio in controls
            ),
            'excess': '/'.join(
                '-' if ratio is None else f'{ratio:.2f}' for ratio in excess
            ),
            'caught': '/'.join(
                'never' if value is None else f'{value:.1f}'
                for value in caught
            ),
            'written': str(run.stats[name]['written']),
            'retries': f'{run.stats[name]["retries"]}/'
            f'{run.stats[name]["failed_requests"]}',
            'dropped': ', '.join(
                f'{cause} {number}'
                for cause, number in sorted(run.stats[name]['dropped'].items())
                if number
            )
            or 'none',
            'rate': str(round(sum(1 for s in samples
                                  if s[1] == WITH and s[0] >= 0)
                              / total)),
            'cpu': f'{run.cpu[name, "with"]:.1f}/{run.cpu[name, "bare"]:.1f}',
            'generator': f'{100 * load["cpu"] / load["wall"]:.0f}%, '
            f'{1e3 * lags[int(0.99 * (len(lags) - 1))]:.1f}',
        })  # fmt: skip
        late[name] = lags[int(0.99 * (len(lags) - 1))]
        medians[name] = max(
            (figures[None, target][0] / 1e3 for target in (WITH, WITHOUT)
             if figures.get((None, target))),
            default=0.0,
        )  # fmt: skip
        verdicts[name]['lost'] = outside == 0
        verdicts[name]['rss'] = growth <= RSS_LIMIT_MB
        verdicts[name]['p99'] = _verdict(ratios)
        verdicts[name]['excess'] = _verdict(excess)

    if arguments.samples:
        with open(arguments.samples, 'w') as handle:
            json.dump(dumped, handle)
    labels: list[tuple[Any, str]] = [
        ('answered', 'requests answered, 200/404/500'),
        ('other', '  other or no answer'),
        ('stored', 'points stored, 200/404/500'),
        ('extra', '  stored, not answered'),
        ('lost', 'points lost'),
        ('allowance', '  killed worker had undelivered'),
        ('outside', 'lost outside the killed worker'),
        ('rss', 'RSS MB start/peak/end'),
        ('growth', 'RSS end - start, MB'),
        (None, 'latency ms p50/p99/max:'),
    ]
    seen = {fault for run in served.values() for fault in run.windows}
    for fault in ('healthy', *(name for name, *_ in SCHEDULE if name in seen)):
        labels += [
            ((fault, 'n'), f'  {fault}: requests, window'
             if fault != 'healthy' else '  healthy: requests'),
            ((fault, WITH), '    with the library'),
            ((fault, WITHOUT), '    without'),
        ]  # fmt: skip
    labels += [
        ('cost', 'library cost, p50/p99 (healthy)'),
        ('outage', 'outage p99 / healthy p99'),
        ('control', '  the same, without the library'),
        ('excess', '  the first over the second'),
        ('caught', 'backlog stored, s after the end'),
        ('written', 'stats(): written'),
        ('retries', '  retries/failed requests'),
        ('dropped', '  dropped'),
        ('rate', 'requests/s sent to each'),
        ('cpu', 'app CPU s during the load, w/wo'),
        ('generator', 'load generator CPU, late p99 ms'),
    ]
    width = max(
        16, *(len(value) for app in cells.values() for value in app.values())
    )
    print()
    header = f'{"":<32}' + ''.join(f'{name:>{width + 1}}' for name in APPS)
    print(header)
    print('-' * len(header))
    for key, label in labels:
        if key is None:
            print(label)
            continue
        print(
            f'{label:<32}'
            + ''.join(
                f'{cells[name].get(key, "-"):>{width + 1}}' for name in APPS
            )
        )
    print('-' * len(header))
    say(
        'Outages in the order killed/frozen/503 then 429.  A window runs '
        "from the fault's start until the points of every request answered "
        'when it ended are stored; * lengthened to hold '
        f'{minimum} requests, or cut at the next fault.'
    )
    runs = list({id(run): run for run in served.values()}.values())

    def busy_text(run: Served) -> str:
        text = f'{100 * run.busy:.0f}% busy'
        if run.pressure is not None:
            text += f', a task waiting for a core {100 * run.pressure:.0f}%'
        return text

    say(
        f'The machine ({os.cpu_count()} cores) was '
        + (
            busy_text(runs[0]) + ' during the load'
            if len(runs) == 1
            else '; '.join(
                f'{busy_text(run)} during the load of {", ".join(run.names)}'
                for run in runs
            )
        )
        + ' (all processes counted; waiting for a core is CPU pressure).'
    )
    behind = {name: value for name, value in late.items() if value > LATE}
    queued = {name: value for name, value in medians.items() if value > QUEUED}
    if behind or queued:
        say(
            'NOTE: the machine did not keep up with the load ('
            + '; '.join(
                [f'the generator sent {name} requests late, p99 '
                 f'{1e3 * value:.0f} ms' for name, value in behind.items()]
                + [f'{name} answered a trivial route in {1e3 * value:.0f} '
                   'ms at the median, healthy' for name, value
                   in queued.items()]
            )
            + '): the latencies of this run are mostly its queue, and '
            'the ratios of latencies between windows are not conclusive.'
        )  # fmt: skip
    print(f'soak: {time.monotonic() - began:.0f} s in all')

    failures = [error for run in runs for error in run.errors]
    for name in APPS:
        if not verdicts[name]['lost']:
            failures.append(
                f'{name}: {cells[name]["outside"]} points lost outside the '
                'killed worker'
            )
        if not verdicts[name]['rss']:
            failures.append(
                f'{name}: RSS grew by {cells[name]["growth"]} MB (limit '
                f'{RSS_LIMIT_MB:g})'
            )
    if not arguments.quick:
        print()
        print('Acceptance (issue 13):')
        items = [
            ("0 points lost outside the killed worker's buffer", 'lost'),
            (f'RSS end minus start under {RSS_LIMIT_MB:g} MB', 'rss'),
            ('p99 during each outage within 2x of healthy p99', 'p99'),
            (
                '  the same, each ratio over that of the app without the '
                'library',
                'excess',
            ),
        ]
        for text, key in items:
            missed = [name for name in APPS if verdicts[name][key] is False]
            unknown = [name for name in APPS if verdicts[name][key] is None]
            if missed:
                verdict = f'DOES NOT HOLD ({", ".join(missed)})'
            elif unknown:
                verdict = f'NOT MEASURED ({", ".join(unknown)}: too few)'
            else:
                verdict = 'HOLDS'
            if key in ('p99', 'excess') and (behind or queued):
                verdict += ' (not conclusive: see the note above)'
            print(f'  {text}: {verdict}')
    if failures:
        print()
        for failure in failures:
            print(f'FAILED: {failure}')
        return 1
    print('soak: no point lost, memory bounded')
    return 0


if __name__ == '__main__':
    sys.exit(main())
