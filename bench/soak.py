"""Soak: the four example apps under load while InfluxDB fails, figures out.

Run it from the repository root, in the environment of ``.ci/bootstrap``::

    python bench/soak.py            # 300 requests/s per app for 60 s
    python bench/soak.py --quick    # the same for 15 s (.ci/run runs it)

It starts a throwaway influxd (``tests/servers.py``), a loopback fault
proxy in front of it (``bench/_soak_proxy.py``), and serves the four example
applications of ``integrations/`` under their real servers, each writing to
its own database through the proxy: Tornado with its own server, Starlette
and FastAPI under uvicorn (``python integrations/<app>.py``), Flask under
gunicorn ``--preload`` with 2 gthread workers (8 threads each).  Each is
also served without the integration (``bench/_soak_bare.py``), the same
way.

One load generator process per app sends requests at a fixed rate, the
integrated app and the bare one alternating (``--rate``, and
``--bare-rate``, 100/s by default so that two shared cores keep up: 2,400
requests/s would saturate them and time the queue, not the apps), over
keep-alive connections: plain route 45%, path
parameter 35%, unrouted (404) 10%, uncaught exception (500) 5%, a response
streamed in three chunks 0.1 s apart 5%.  Meanwhile, on a schedule (times
for 60 s; ``--quick`` scales times and durations to its 15 s):

* at 8 s influxd is killed with SIGKILL, and started again 5 s later;
* at 20 s influxd is frozen with SIGSTOP, and resumed with SIGCONT 3 s later;
* at 30 s the proxy answers 503 with ``Retry-After: 1`` for 5 s, then 429
  for 5 s;
* at 46 s one gunicorn worker of the Flask app is killed with SIGKILL
  (gunicorn starts another): the worker writes its ``stats()`` just
  before (``integrations/stats_file.py``), so that what it had not yet
  delivered is known exactly.

After the load, the soak waits for the apps to deliver (their settings:
``INFLUXDB_INTERVAL=1000``, the rest the defaults), stops them with SIGTERM
and prints one table: requests answered against points stored, by status;
points lost; RSS of the app's processes at start (before the load), peak,
end (after delivery, before SIGTERM); latency of the requests (the streamed
one left out: its pauses are its own) without the library, healthy, and in
each fault's window (from its start to 2 s after its end, a quarter of that
in quick mode); the apps' ``stats()`` at exit.

It fails (exit status 1) when a point is lost other than those the killed
worker had not delivered, or when an app's RSS at the end exceeds its start
by more than 50 MB.  Latency ratios are reported; the full run also says
whether each acceptance item of issue 13 holds.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import glob
import http.client
import itertools
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
for _path in (ROOT, BENCH):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from _soak_proxy import FaultProxy  # noqa: E402

from tests.helpers import clean_environment  # noqa: E402
from tests.servers import InfluxServer, free_port  # noqa: E402

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
# (name, path, weight); {n} is a number from 1 to 999.
ROUTES = [
    ('plain', '/', 45),
    ('parameter', '/items/{n}', 35),
    ('unrouted', '/no/such/page/{n}', 10),
    ('error', '/error', 5),
    ('stream', '/stream', 5),
]
STREAM = 4
# (name, start, duration) in seconds of a 60 s run.
SCHEDULE = [
    ('influxd killed', 8.0, 5.0),
    ('influxd frozen', 20.0, 3.0),
    ('503 then 429', 30.0, 10.0),
    ('worker killed', 46.0, 0.0),
]
OUTAGES = ('influxd killed', 'influxd frozen', '503 then 429')
RSS_LIMIT_MB = 50.0
MEASUREMENT = 'request'


def log(message: str, started: float | None = None) -> None:
    stamp = f'[{time.monotonic() - started:6.1f} s] ' if started else ''
    print(f'{stamp}{message}', flush=True)


# -- the load generator (one process per app) -------------------------------


def drive(plan: dict[str, Any]) -> list[tuple[float, int, int, int, float]]:
    """Send the requests of *plan*; return (due, target, route, status,
    latency) for each, target 0 the app with the library, 1 without."""
    rng = random.Random(plan['seed'])
    weights = [weight for _, _, weight in ROUTES]
    ticks = [(i / plan['rate'], 0) for i in range(plan['count'])]
    if plan['bare_rate']:
        ticks += [
            ((i + 0.5) / plan['bare_rate'], 1)
            for i in range(
                int(plan['count'] * plan['bare_rate'] / plan['rate'])
            )
        ]
    ticks.sort()
    work = [
        (due, target, rng.choices(range(len(ROUTES)), weights)[0],
         rng.randint(1, 999))
        for due, target in ticks
    ]  # fmt: skip
    ports = (plan['port'], plan['bare_port'])
    start = plan['start']
    counter = itertools.count()
    results: list[tuple[float, int, int, int, float]] = []

    def request(
        connections: dict[int, http.client.HTTPConnection],
        target: int,
        path: str,
    ) -> int:
        for attempt in range(2):
            connection = connections.get(target)
            reused = connection is not None
            if connection is None:
                connection = http.client.HTTPConnection(
                    '127.0.0.1', ports[target], timeout=30
                )
                connections[target] = connection
            try:
                connection.request('GET', path)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                del connections[target]
                # A kept-alive connection the server had closed: retry once
                # on a new one, as HTTP clients do.
                stale = isinstance(
                    error,
                    (
                        http.client.RemoteDisconnected,
                        ConnectionResetError,
                        BrokenPipeError,
                    ),
                )
                if reused and stale and attempt == 0:
                    continue
                return 0
            if response.will_close:
                connection.close()
                del connections[target]
            return int(response.status)
        return 0

    def worker() -> None:
        connections: dict[int, http.client.HTTPConnection] = {}
        while True:
            index = next(counter)
            if index >= len(work):
                break
            due, target, route, number = work[index]
            delay = start + due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            path = ROUTES[route][1].format(n=number)
            began = time.monotonic()
            status = request(connections, target, path)
            results.append(
                (due, target, route, status, time.monotonic() - began)
            )
        for connection in connections.values():
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# -- processes --------------------------------------------------------------


class App:
    """One application served in its own session (process group)."""

    def __init__(
        self, name: str, variant: str, directory: str, env: dict[str, str]
    ) -> None:
        self.name = name
        self.variant = variant
        self.port = free_port()
        self.log_path = os.path.join(directory, f'{name}-{variant}.log')
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
        flask: App,
        stats_dir: str,
        start: float,
        scale: float,
    ) -> None:
        self.server = server
        self.proxy = proxy
        self.flask = flask
        self.stats_dir = stats_dir
        self.start = start
        self.scale = scale
        self.windows: dict[str, tuple[float, float]] = {}
        self.killed: dict[str, Any] | None = None
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _at(self, offset: float) -> float:
        delay = self.start + offset * self.scale - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return time.monotonic() - self.start

    def say(self, message: str) -> None:
        log(f'[{time.monotonic() - self.start:5.1f} s] {message}')

    def _run(self) -> None:
        try:
            self._apply()
        except Exception as error:  # reported, and the run fails
            self.errors.append(f'fault schedule: {error!r}')
            self.proxy.set_fault(None)
            if self.server.frozen:
                self.server.thaw()

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
        self.windows['influxd killed'] = (began, self._at(0))
        self.say('influxd started again')

        began = self._at(freeze_at)
        self.server.freeze()
        self.say(f'influxd frozen (SIGSTOP) for {frozen * self.scale:g} s')
        self._at(freeze_at + frozen)
        self.server.thaw()
        self.windows['influxd frozen'] = (began, self._at(0))
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
        self.windows['503 then 429'] = (began, self._at(0))
        self.say('proxy relays to influxd again')

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
            self.killed = json.loads(handle.read().rstrip(b'\0'))
        self.windows['worker killed'] = (began, self._at(0))
        undelivered = undelivered_at_kill(self.killed)
        self.say(
            f'gunicorn worker {victim} killed with SIGKILL, '
            f'{undelivered} measurements not yet delivered'
        )


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


def percentiles(values: list[float]) -> tuple[float, float, float] | None:
    if len(values) < 20:
        return None
    ordered = sorted(values)
    quantiles = statistics.quantiles(ordered, n=100, method='inclusive')
    return quantiles[49] * 1e3, quantiles[98] * 1e3, ordered[-1] * 1e3


def latency_cell(figures: tuple[float, float, float] | None) -> str:
    if figures is None:
        return '-'
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='15 s, for CI')
    parser.add_argument('--duration', type=float, help='seconds of load')
    parser.add_argument(
        '--rate',
        type=float,
        default=300.0,
        help='requests/s to each app (default 300)',
    )
    parser.add_argument(
        '--bare-rate',
        type=float,
        default=100.0,
        help='requests/s to each app without the library, alternating '
        'with the others (default 100)',
    )
    parser.add_argument('--seed', type=int, default=13)
    arguments = parser.parse_args()
    duration = arguments.duration or (15.0 if arguments.quick else 60.0)
    scale = duration / 60.0
    recovery = 2.0 * scale
    began = time.monotonic()
    print(
        f'soak: {len(APPS)} apps, {arguments.rate:g} requests/s each '
        f'({arguments.bare_rate:g}/s to each without the library) for '
        f'{duration:g} s; faults at {scale:g}x the 60 s schedule',
        flush=True,
    )

    directory = tempfile.mkdtemp(prefix='soak-')
    server = InfluxServer()
    proxy: FaultProxy | None = None
    apps: dict[str, App] = {}
    bare: dict[str, App] = {}
    try:
        server.start()
        proxy = FaultProxy(server.port).start()
        for name in APPS:
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
        if (
            len(apps['flask'].workers()) < 2
            or len(bare['flask'].workers()) < 2
        ):
            time.sleep(1.0)
        log(f'influxd, proxy and {2 * len(APPS)} servers up', began)
        rss = RSS(apps)

        context = multiprocessing.get_context('spawn')
        start = time.monotonic() + 3.0
        count = int(arguments.rate * duration)
        with concurrent.futures.ProcessPoolExecutor(
            len(APPS), mp_context=context
        ) as pool:
            futures = {
                name: pool.submit(
                    drive,
                    {
                        'seed': arguments.seed + index,
                        'rate': arguments.rate,
                        'bare_rate': arguments.bare_rate,
                        'count': count,
                        'port': apps[name].port,
                        'bare_port': bare[name].port,
                        'start': start,
                    },
                )
                for index, name in enumerate(APPS)
            }
            faults = Faults(
                server,
                proxy,
                apps['flask'],
                os.path.join(directory, 'stats-flask'),
                start,
                scale,
            )
            log('load starts', began)
            faults.thread.start()
            results = {
                name: future.result() for name, future in futures.items()
            }
            faults.thread.join()
        log('load ended', began)

        answered: dict[str, Counter[int]] = {}
        for name, samples in results.items():
            answered[name] = Counter(
                status for _, target, _, status, _ in samples if target == 0
            )
        allowance = {name: 0 for name in APPS}
        if faults.killed is not None:
            allowance['flask'] = undelivered_at_kill(faults.killed)

        def missing(name: str) -> int:
            counts = stored(server, name)
            return sum(
                max(0, number - counts[status])
                for status, number in answered[name].items()
                if status
            )

        deadline = time.monotonic() + max(10.0, 30.0 * scale * 2)
        waiting = set(APPS)
        while waiting and time.monotonic() < deadline:
            waiting = {
                name for name in waiting if missing(name) > allowance[name]
            }
            if waiting:
                time.sleep(0.5)
        log(
            'delivered while running: '
            + ('all' if not waiting else f'not yet for {sorted(waiting)}'),
            began,
        )
        rss.finish()
        stopping = [
            threading.Thread(target=app.stop)
            for app in [*apps.values(), *bare.values()]
        ]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()
        log('apps stopped (SIGTERM)', began)
        final = {name: stored(server, name) for name in APPS}
        stats = {
            name: read_stats(os.path.join(directory, f'stats-{name}'))
            for name in APPS
        }
    finally:
        for app in [*apps.values(), *bare.values()]:
            app.stop(timeout=5)
        if proxy is not None:
            proxy.close()
        server.close()
        shutil.rmtree(directory, ignore_errors=True)
        log('everything stopped', began)

    # -- the table -----------------------------------------------------------
    windows = {
        name: (first, last + recovery)
        for name, (first, last) in faults.windows.items()
    }

    def window_of(due: float) -> str | None:
        for name, (first, last) in windows.items():
            if first <= due <= last:
                return name
        return None

    verdicts: dict[str, dict[str, bool]] = {name: {} for name in APPS}
    cells: dict[str, dict[str, Any]] = {name: {} for name in APPS}
    statuses = (200, 404, 500)
    sent: dict[str, int] = {}
    for name in APPS:
        got, kept = answered[name], final[name]
        lost = sum(
            max(0, number - kept[status])
            for status, number in got.items()
            if status
        )
        outside = max(0, lost - allowance[name])
        extra = sum(
            max(0, number - got[status]) for status, number in kept.items()
        )
        sent[name] = sum(1 for sample in results[name] if sample[1] == 0)
        warm = 1.0
        samples = [s for s in results[name] if s[2] != STREAM and s[0] >= warm]
        without = [s[4] for s in samples if s[1] == 1 and s[3]]
        healthy = [
            s[4]
            for s in samples
            if s[1] == 0 and s[3] and window_of(s[0]) is None
        ]
        during = {
            fault: [
                s[4]
                for s in samples
                if s[1] == 0 and s[3] and window_of(s[0]) == fault
            ]
            for fault in windows
        }
        figures = {
            'without': percentiles(without),
            'healthy': percentiles(healthy),
            **{fault: percentiles(values) for fault, values in during.items()},
        }
        growth = rss.end[name] - rss.start[name]
        worst = max(
            (figures[fault][1] for fault in OUTAGES if figures.get(fault)),
            default=float('nan'),
        )
        base = figures['healthy']
        bare_figures = figures['without']
        cells[name] = {
            'answered': '/'.join(str(got[s]) for s in statuses),
            'other': str(sum(n for s, n in got.items() if s not in statuses)),
            'stored': '/'.join(str(kept[s]) for s in statuses),
            'extra': str(extra),
            'lost': str(lost),
            'allowance': str(allowance[name]) if name == 'flask' else '-',
            'outside': str(outside),
            'rss': f'{rss.start[name]:.0f}/{rss.peak[name]:.0f}/'
            f'{rss.end[name]:.0f}',
            'growth': f'{growth:+.1f}',
            **{key: latency_cell(value) for key, value in figures.items()},
            'cost': (
                f'{base[0] / bare_figures[0]:.2f}/'
                f'{base[1] / bare_figures[1]:.2f}'
                if base and bare_figures
                else '-'
            ),
            'outage': f'{worst / base[1]:.2f}' if base else '-',
            'written': str(stats[name]['written']),
            'retries': f'{stats[name]["retries"]}/'
            f'{stats[name]["failed_requests"]}',
            'dropped': ', '.join(
                f'{cause} {number}'
                for cause, number in sorted(stats[name]['dropped'].items())
                if number
            )
            or 'none',
            'rate': str(round(sent[name] / duration)),
        }
        verdicts[name]['lost'] = outside == 0
        verdicts[name]['rss'] = growth <= RSS_LIMIT_MB
        verdicts[name]['p99'] = bool(base) and worst <= 2 * base[1]

    labels = [
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
        ('without', '  without the library'),
        ('healthy', '  with it, healthy'),
        *((fault, f'  {fault}') for fault in windows),
        ('cost', 'library cost, p50/p99 ratio'),
        ('outage', 'outage p99 / healthy p99'),
        ('written', 'stats(): written'),
        ('retries', '  retries/failed requests'),
        ('dropped', '  dropped'),
        ('rate', 'requests/s sent (with library)'),
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
    print(f'soak: {time.monotonic() - began:.0f} s in all')

    failures = list(faults.errors)
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
            ('p99 during an outage within 2x of healthy p99', 'p99'),
        ]
        for text, key in items:
            held = all(verdicts[name][key] for name in APPS)
            missed = [name for name in APPS if not verdicts[name][key]]
            print(
                f'  {text}: {"HOLDS" if held else "DOES NOT HOLD"}'
                + (f' ({", ".join(missed)})' if missed else '')
            )
    if failures:
        print()
        for failure in failures:
            print(f'FAILED: {failure}')
        return 1
    print('soak: no point lost, memory bounded')
    return 0


if __name__ == '__main__':
    sys.exit(main())
