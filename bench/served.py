"""Served benchmark: each integration behind its real server, over loopback.

Each framework's application (``bench/_served_app.py``: ``GET
/items/42`` through a route with a path parameter, a small JSON answer) is
served by the server users run it with, one server process per contender:

* ``tornado``: Tornado's ``HTTPServer``, one process; contenders bare,
  ``historical`` (sprockets-influxdb 2.2.1's mixin, from
  ``bench/.vendor``) and ``ours`` (:class:`sprockets_influxdb.InfluxDBMixin`);
* ``starlette``: uvicorn (one process, ``--http httptools``, asyncio, no
  access log); bare, ours, ``prometheus``
  (prometheus-fastapi-instrumentator), ``starlette_exporter`` and
  ``opentelemetry`` (opentelemetry-instrumentation-starlette);
* ``fastapi``: uvicorn likewise; bare, ours, prometheus-fastapi-instrumentator
  and OpenTelemetry (opentelemetry-instrumentation-fastapi);
* ``flask-sync`` and ``flask-gthread``: gunicorn with one worker, ``sync``
  (one request at a time, no keep-alive) or ``gthread`` (4 threads); bare,
  ours, ``prometheus`` (prometheus_flask_exporter) and OpenTelemetry
  (opentelemetry-instrumentation-flask).

OpenTelemetry runs with its SDK: spans go through a ``BatchSpanProcessor``
to an exporter that drops them, metrics to an in-memory reader.  The
Prometheus contenders keep their metrics in memory (nothing scrapes them).
This library and 2.2.1 really deliver, to a throwaway ``influxd`` the
script starts (``INFLUXDB_INTERVAL=500``: a batch at least every half
second, or ``SERVED_INTERVAL_MS`` from the environment; every other
setting at its default), each contender to a database of its own.

Every contender's server runs for the whole benchmark.  Each round, each
contender is loaded in turn (the order rotates round by round) for a fixed
time by ``wrk`` (``-t1 -c8``: one thread, 8 keep-alive connections; a
bounded Python client with the same connections when ``wrk`` is missing).
The figures of a round: the requests per second the load generator
counted, and the CPU time of the server's whole process tree (every
process and every thread: ``utime + stime`` of ``/proc/<pid>/stat``, the
gunicorn master and worker, the library's writer thread...) from just
before the load until, for the contenders that deliver, their points of
the round are stored (this library: the stored count, polled, reaches the
requests served so far; 2.2.1, whose millisecond times make points of the
same series overwrite each other, is given a second): so work moved off the
request path to a writer thread but still paid for is counted, divided by
the requests served.  The overhead of an integration is the median over the
rounds of its CPU per request minus the bare application's in the same
round.  Beside it, in brackets, an interval that holds the median of such
differences with at least 90% probability whatever their distribution
(order statistics of the rounds: with 7 rounds or fewer, the smallest
and the largest difference), and for the target the ratios the two
intervals allow at worst and at best: a verdict is "within the noise"
when the target lies between them.

With ``--paired``, each round loads all the contenders of a scenario at
once instead, each by a load generator of its own, for 3 s by default:
they then share whatever state the machine is in (its clock speed, the
other work on its cores), which moves between the windows of one
contender after the other by more than the differences being measured.
The CPU of each server is then read thread by thread from
``/proc/<pid>/task/<tid>/schedstat``, in nanoseconds rather than clock
ticks; a window during which a thread or a process of a server began or
ended is run again.  The CPU per request of every contender is higher
that way (the servers and their load generators share the two cores,
which costs each request more), and so are the overheads.  ``--pin``
keeps the servers on the first core and everything else (the load
generators, ``influxd``, this script) on the others, with ``taskset``:
the servers then take turns on one core, and the differences between
them spread less from round to round.

At the end the servers are stopped (SIGTERM: they deliver what is left) and
the points this library stored are counted: a run where it stored fewer
than the requests served is invalid (the summary says so and the target is
MISSED).

Targets (issue 15): the Tornado mixin at most half of 2.2.1's overhead;
under uvicorn and gunicorn, this library at most half of the best
competitor's overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import functools
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    BENCH_DIR,
    ROOT,
    describe_machine,
    median_interval,
    rotated,
    spread,
    verdict,
)

try:
    from tests.servers import InfluxServer
except ImportError as error:  # pragma: no cover - a broken checkout
    raise SystemExit(
        f'served: cannot import InfluxServer from {ROOT}/tests/servers.py '
        f'({error})'
    ) from None

PATH = '/items/42'
CONNECTIONS = 8
INTERVAL_MS = int(os.environ.get('SERVED_INTERVAL_MS', '500'))
MEASUREMENT = 'request'
TICK = os.sysconf('SC_CLK_TCK')
TARGET = 2.0  # ours at most half of the reference's overhead

SCENARIOS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # name: (framework, server, contenders)
    'tornado': ('tornado', 'tornado', ('bare', 'historical', 'ours')),
    'starlette': (
        'starlette',
        'uvicorn',
        ('bare', 'ours', 'prometheus', 'starlette_exporter', 'opentelemetry'),
    ),
    'fastapi': (
        'fastapi',
        'uvicorn',
        ('bare', 'ours', 'prometheus', 'opentelemetry'),
    ),
    'flask-sync': (
        'flask',
        'gunicorn-sync',
        ('bare', 'ours', 'prometheus', 'opentelemetry'),
    ),
    'flask-gthread': (
        'flask',
        'gunicorn-gthread',
        ('bare', 'ours', 'prometheus', 'opentelemetry'),
    ),
}
DELIVERING = ('ours', 'historical')
# With --pin: the command prefixes that keep the servers on one core and
# the load generators on the others (empty: no pinning).
PIN_SERVERS: list[str] = []
PIN_LOAD: list[str] = []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return int(sock.getsockname()[1])


def tree(pid: int) -> Iterator[int]:
    """*pid* and its descendants, each before its children (a process
    gone meanwhile has none)."""
    pending = [pid]
    while pending:
        current = pending.pop()
        yield current
        pending.extend(children(current))


def tree_cpu(pid: int, seen: set[int] | None = None) -> float:
    """CPU seconds of *pid* and its descendants, all their threads.

    In clock ticks (``utime + stime``), which include the threads that
    ended.

    :param seen: filled with the process ids counted
    """
    total = 0
    for current in tree(pid):
        try:
            with open(f'/proc/{current}/stat', 'rb') as stat:
                text = stat.read()
        except OSError:
            continue  # gone
        if seen is not None:
            seen.add(current)
        # The command name may hold spaces: count fields after its ')'.
        fields = text[text.rindex(b')') + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def pin_tree(pid: int | None, cores: set[int]) -> None:
    """Keep every thread of *pid* on *cores*."""
    if pid is None:
        return
    for task in os.listdir(f'/proc/{pid}/task'):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task), cores)


def pin() -> set[int]:
    """Servers on the first core, load generators and this process on
    the others (:data:`PIN_SERVERS`, :data:`PIN_LOAD`); return those.

    :raises ValueError: without two cores or ``taskset``
    """
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 or shutil.which('taskset') is None:
        raise ValueError('--pin needs two cores and taskset (util-linux)')
    others = set(cores[1:])
    PIN_SERVERS[:] = ['taskset', '-c', str(cores[0])]
    PIN_LOAD[:] = ['taskset', '-c', ','.join(map(str, cores[1:]))]
    os.sched_setaffinity(0, others)
    return others


def children(pid: int) -> list[int]:
    """The processes *pid*'s threads started, that are still running."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f'/proc/{pid}/task'):
            path = f'/proc/{pid}/task/{task}/children'
            with contextlib.suppress(OSError), open(path, 'rb') as children:
                found.extend(int(p) for p in children.read().split())
    return found


def tree_cpu_ns(pid: int, seen: set[tuple[int, int]]) -> float:
    """CPU seconds of *pid* and its descendants, thread by thread.

    From each thread's ``schedstat`` (nanoseconds, where clock ticks are
    10 ms): a thread that ends takes its time with it, so *seen* is filled
    with the (process, thread) pairs counted, for the caller to check
    that none ended or began.
    """
    total = 0
    for current in tree(pid):
        try:
            tasks = os.listdir(f'/proc/{current}/task')
        except OSError:
            continue  # gone
        for task in tasks:
            path = f'/proc/{current}/task/{task}/schedstat'
            try:
                with open(path, 'rb') as stat:
                    total += int(stat.read().split()[0])
            except OSError:
                continue
            seen.add((current, int(task)))
    return total / 1e9


@dataclass
class Load:
    """What the load generator counted in one window."""

    requests: int
    seconds: float
    errors: str = ''


WRK_REQUESTS = re.compile(r'(\d+) requests in ([\d.]+)(us|ms|s|m)')
WRK_NON_2XX = re.compile(r'Non-2xx or 3xx responses: (\d+)')
WRK_SOCKET = re.compile(r'Socket errors: (.*)')
UNITS = {'us': 1e-6, 'ms': 1e-3, 's': 1.0, 'm': 60.0}


def wrk_load(port: int, duration: float) -> Load:
    """Load 127.0.0.1:*port* with wrk for *duration* seconds.

    wrk takes whole seconds: it is started for longer and interrupted
    (SIGINT, on which it stops and reports) after *duration*.
    """
    command = [
        'wrk',
        '-t1',
        f'-c{CONNECTIONS}',
        f'-d{int(duration) + 30}s',
        '--timeout',
        '5s',
        f'http://127.0.0.1:{port}{PATH}',
    ]
    with tempfile.TemporaryFile('w+') as out:
        process = subprocess.Popen(
            [*PIN_LOAD, *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(duration)
        process.send_signal(signal.SIGINT)
        returncode = process.wait(timeout=30)
        out.seek(0)
        output = out.read()
    done = subprocess.CompletedProcess(command, returncode, output, '')
    output = done.stdout
    found = WRK_REQUESTS.search(output)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f'wrk failed: {output}')
    errors = []
    non_2xx = WRK_NON_2XX.search(output)
    if non_2xx:
        errors.append(f'{non_2xx.group(1)} non-2xx responses')
    socket_errors = WRK_SOCKET.search(output)
    if socket_errors:
        # gunicorn's sync worker closes each connection: not an error.
        numbers = dict(
            part.strip().split(' ')
            for part in socket_errors.group(1).split(',')
        )
        bad = {k: v for k, v in numbers.items() if k != 'read' and v != '0'}
        if bad:
            errors.append(f'socket errors {bad}')
    return Load(
        requests=int(found.group(1)),
        seconds=float(found.group(2)) * UNITS[found.group(3)],
        errors='; '.join(errors),
    )


REQUEST = (
    f'GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\n\r\n'
).encode()


async def _python_load(port: int, duration: float) -> Load:
    """Keep-alive HTTP/1.1 clients on CONNECTIONS connections, bounded."""
    deadline = time.monotonic() + duration
    counts = [0]
    errors: list[str] = []

    async def one_connection() -> None:
        reader = writer = None
        while time.monotonic() < deadline:
            if writer is None:
                reader, writer = await asyncio.open_connection(
                    '127.0.0.1', port
                )
            assert reader is not None
            writer.write(REQUEST)
            head = await asyncio.wait_for(
                reader.readuntil(b'\r\n\r\n'), timeout=5
            )
            lines = head.decode('latin-1').lower().split('\r\n')
            if not lines[0].startswith('http/1.1 200'):
                errors.append(lines[0])
            headers = dict(
                line.split(':', 1) for line in lines[1:] if ':' in line
            )
            length = int(headers.get('content-length', '0'))
            await reader.readexactly(length)
            counts[0] += 1
            if headers.get('connection', '').strip() == 'close':
                writer.close()
                writer = None
        if writer is not None:
            writer.close()

    start = time.monotonic()
    await asyncio.gather(*(one_connection() for _ in range(CONNECTIONS)))
    return Load(counts[0], time.monotonic() - start, '; '.join(errors[:3]))


def python_load(port: int, duration: float) -> Load:
    """The load generator used when wrk is missing."""
    return asyncio.run(_python_load(port, duration))


def server_command(kind: str, bench: Path, port: int) -> list[str]:
    """The command that serves ``bench/_served_app.py`` from the *bench*
    directory with the server *kind* (a scenario's server) on *port*."""
    python = sys.executable
    if kind == 'tornado':
        return [python, str(bench / '_served_app.py'), str(port)]
    if kind == 'uvicorn':
        return [
            python,
            '-m',
            'uvicorn',
            '--app-dir',
            str(bench),
            '--host',
            '127.0.0.1',
            '--port',
            str(port),
            '--http',
            'httptools',
            '--loop',
            'asyncio',
            '--no-access-log',
            '--log-level',
            'warning',
            '_served_app:app',
        ]
    worker = kind.split('-', 1)[1]
    command = [
        python,
        '-m',
        'gunicorn',
        '--chdir',
        str(bench),
        '--bind',
        f'127.0.0.1:{port}',
        '--workers',
        '1',
        '--worker-class',
        worker,
        '--log-level',
        'warning',
    ]
    if worker == 'gthread':
        command += ['--threads', '4']
    if _gunicorn_has('--no-control-socket'):
        # gunicorn 27 (here): every master would open the same control
        # socket, and all but the first log an error.
        command.append('--no-control-socket')
    return [*command, '_served_app:app']


@functools.cache
def _gunicorn_has(option: str) -> bool:
    """Whether the installed gunicorn knows the command-line *option*."""
    done = subprocess.run(
        [sys.executable, '-m', 'gunicorn', '--help'],
        capture_output=True,
        text=True,
    )
    return option in done.stdout


@dataclass
class Server:
    """One contender's server process."""

    scenario: str
    contender: str
    framework: str
    kind: str
    port: int
    database: str
    log: Path
    process: subprocess.Popen[bytes] | None = None
    served: int = 0  # requests the load generator counted, warm-up included
    windows: int = 0
    cpu: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    invalid: str = ''

    def command(self) -> list[str]:
        return server_command(self.kind, BENCH_DIR, self.port)

    def start(self, influx_url: str) -> None:
        env = dict(
            os.environ,
            SERVED_FRAMEWORK=self.framework,
            SERVED_CONTENDER=self.contender,
            SERVED_DATABASE=self.database,
            INFLUXDB_URL=influx_url,
            INFLUXDB_INTERVAL=str(INTERVAL_MS),
            PYTHONPATH=os.pathsep.join(
                [str(ROOT), os.environ.get('PYTHONPATH', '')]
            ),
        )
        with open(self.log, 'wb') as log:
            self.process = subprocess.Popen(
                [*PIN_SERVERS, *self.command()],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        url = f'http://127.0.0.1:{self.port}{PATH}'
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f'{self.name} exited: {self.log.read_text()[-2000:]}'
                )
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        response.read()
                        self.served += 1
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f'{self.name} did not answer {url}')
            time.sleep(0.2)

    @property
    def name(self) -> str:
        return f'{self.scenario}/{self.contender}'

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stored(influx: InfluxServer, database: str) -> int:
    """How many request points *database* holds."""
    result = influx.query(
        f'SELECT COUNT("duration") FROM {MEASUREMENT}', db=database
    )
    series = result['results'][0].get('series')
    return int(series[0]['values'][0][1]) if series else 0


def wait_stored(influx: InfluxServer, server: Server, timeout: float) -> None:
    """Wait until *server*'s database holds a point per request served."""
    deadline = time.monotonic() + timeout
    while stored(influx, server.database) < server.served:
        if time.monotonic() > deadline:
            server.invalid = (
                f'only {stored(influx, server.database)} of '
                f'{server.served} requests stored {timeout:.0f} s after '
                'the load'
            )
            return
        time.sleep(0.05)


def settle(group: list[Server], influx: InfluxServer) -> None:
    """Wait until the points of what *group* served are delivered.

    This library's: until its stored count reaches the requests served.
    2.2.1's, which cannot be counted (its points of one millisecond and
    series overwrite each other): two of its intervals.  The others
    deliver nothing: a moment for the last responses' work to end.
    """
    for server in group:
        if server.contender == 'ours':
            wait_stored(influx, server, timeout=30)
    if any(server.contender == 'historical' for server in group):
        time.sleep(INTERVAL_MS / 1000 * 2)
    else:
        time.sleep(0.05)


def window(
    server: Server, influx: InfluxServer, duration: float, load: object
) -> tuple[float, float]:
    """Load *server* once: (CPU seconds per request, requests per second).

    A window during which a process of the server's tree ended or began
    (gunicorn replacing a worker) does not count what the tree used: it is
    run again, up to twice.
    """
    assert server.process is not None
    pid = server.process.pid
    for _ in range(3):
        processes: set[int] = set()
        before = tree_cpu(pid, processes)
        result: Load = load(server.port, duration)  # type: ignore[operator]
        if result.errors:
            raise RuntimeError(f'{server.name}: {result.errors}')
        server.served += result.requests
        server.windows += 1
        settle([server], influx)
        still: set[int] = set()
        after = tree_cpu(pid, still)
        if still == processes and result.requests:
            return (
                (after - before) / result.requests,
                result.requests / result.seconds,
            )
        print(
            f'    {server.name}: its processes changed during a window '
            f'({sorted(processes)} -> {sorted(still)}): run again',
            flush=True,
        )
    raise RuntimeError(f'{server.name}: its processes keep changing')


def paired_window(
    group: list[Server], influx: InfluxServer, duration: float, load: object
) -> dict[str, tuple[float, float]]:
    """Load every server of *group* at once, each by its own generator.

    Returns each contender's (CPU seconds per request, requests per
    second).  All of them share the machine's state of the moment (its
    clock speed, what else runs on it), which moves between the windows
    of the alternating design by more than the differences measured.
    CPU is read thread by thread in nanoseconds; a window during which a
    thread or process of a server began or ended is run again, up to
    twice.
    """
    for _ in range(3):
        seen: dict[str, set[tuple[int, int]]] = {}
        before: dict[str, float] = {}
        for server in group:
            assert server.process is not None
            seen[server.contender] = set()
            before[server.contender] = tree_cpu_ns(
                server.process.pid, seen[server.contender]
            )
        with concurrent.futures.ThreadPoolExecutor(len(group)) as pool:
            futures = {
                server.contender: pool.submit(
                    load,  # type: ignore[arg-type]
                    server.port,
                    duration,
                )
                for server in group
            }
            results: dict[str, Load] = {
                name: future.result() for name, future in futures.items()
            }
        for server in group:
            result = results[server.contender]
            if result.errors:
                raise RuntimeError(f'{server.name}: {result.errors}')
            server.served += result.requests
            server.windows += 1
        settle(group, influx)
        changed = []
        figures: dict[str, tuple[float, float]] = {}
        for server in group:
            assert server.process is not None
            still: set[tuple[int, int]] = set()
            after = tree_cpu_ns(server.process.pid, still)
            result = results[server.contender]
            if still != seen[server.contender] or not result.requests:
                changed.append(server.name)
                continue
            figures[server.contender] = (
                (after - before[server.contender]) / result.requests,
                result.requests / result.seconds,
            )
        if not changed:
            return figures
        print(
            f'    {", ".join(changed)}: threads or processes began or '
            'ended during a window: run again',
            flush=True,
        )
    raise RuntimeError(f'{group[0].scenario}: its threads keep changing')


@contextlib.contextmanager
def servers(
    selected: list[str], influx: InfluxServer, directory: Path
) -> Iterator[dict[str, list[Server]]]:
    """Start a server per contender of each selected scenario."""
    made: dict[str, list[Server]] = {}
    try:
        for scenario in selected:
            framework, kind, contenders = SCENARIOS[scenario]
            made[scenario] = []
            for contender in contenders:
                database = f'{scenario}_{contender}'.replace('-', '_')
                if contender in DELIVERING:
                    influx.create_database(database)
                server = Server(
                    scenario,
                    contender,
                    framework,
                    kind,
                    free_port(),
                    database,
                    directory / f'{database}.log',
                )
                server.start(influx.url)
                made[scenario].append(server)
        for group in made.values():
            for server in group:
                server.wait_ready()
        yield made
    finally:
        for group in made.values():
            for server in group:
                server.stop()


def median(values: list[float]) -> float:
    return statistics.median(values)


def report(
    scenario: str, group: list[Server], influx: InfluxServer
) -> tuple[str, bool]:
    """Print a scenario's table; return its summary and whether it met."""
    bare = group[0]
    assert bare.contender == 'bare'
    print(f'  {scenario} ({SCENARIOS[scenario][1]}):')
    overheads: dict[str, float] = {}
    intervals: dict[str, tuple[float, float]] = {}
    for server in group:
        line = (
            f'    {server.contender:19} {median(server.rates):8,.0f} req/s  '
            f'{median(server.cpu) * 1e6:7.1f} us CPU/request '
            f'(min/max {spread(server.cpu)})'
        )
        if server is not bare:
            differences = [a - b for a, b in zip(server.cpu, bare.cpu)]
            overhead = median(differences)
            overheads[server.contender] = overhead
            low, high = intervals[server.contender] = median_interval(
                differences
            )
            line += (
                f'  overhead {overhead * 1e6:+7.1f} us '
                f'[{low * 1e6:+.1f}, {high * 1e6:+.1f}]'
            )
        if server.contender in DELIVERING:
            count = stored(influx, server.database)
            line += f'; stored {count:,} of {server.served:,} served'
            if server.contender == 'ours' and not server.invalid:
                # Requests cut short when a window ends may be recorded
                # (as 499) without the load generator counting them.
                slack = CONNECTIONS * (server.windows + 1)
                if not server.served <= count <= server.served + slack:
                    server.invalid = f'{count} stored, {server.served} served'
        print(line)
    ours = overheads['ours']
    others = {k: v for k, v in overheads.items() if k != 'ours'}
    best_name = min(others, key=others.__getitem__)
    best = others[best_name]
    ratio = best / ours if ours > 0 else float('inf')
    invalid = [s for s in group if s.invalid]
    for server in invalid:
        print(f'    INVALID {server.name}: {server.invalid}')
    met = ratio >= TARGET and not invalid
    # The ratio the two intervals allow, at worst and at best.
    (ours_low, ours_high), (best_low, best_high) = (
        intervals['ours'],
        intervals[best_name],
    )
    worst = best_low / ours_high if ours_high > 0 else float('inf')
    most = best_high / ours_low if ours_low > 0 else float('inf')
    noise = ' (within the noise)' if worst < TARGET <= most else ''
    print(
        f'    ours {ours * 1e6:+.1f} us against {best_name} '
        f'{best * 1e6:+.1f} us: {ratio:.1f}x less (target {TARGET:.0f}x; '
        f'the intervals allow {worst:.1f}x to {most:.1f}x){noise}'
    )
    summary = f'{scenario} {ours * 1e6:+.1f} us vs {best_name} ' + (
        f'{best * 1e6:+.1f} us ({ratio:.1f}x, {worst:.1f}x to {most:.1f}x)'
        + (' INVALID' if invalid else '')
    )
    return summary, met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument(
        '--duration',
        type=float,
        default=None,
        help='seconds of load per contender per round (default 1.5, '
        'or 3 with --paired)',
    )
    parser.add_argument(
        '--paired',
        action='store_true',
        help="load a scenario's contenders at once, each by its own load "
        'generator, instead of one after the other',
    )
    parser.add_argument(
        '--only',
        action='append',
        default=[],
        help=f'scenarios to run, of {", ".join(SCENARIOS)} (repeatable or '
        'comma-separated; default all)',
    )
    parser.add_argument(
        '--pin',
        action='store_true',
        help='servers on the first core, load generators, influxd and this '
        'script on the others (taskset)',
    )
    parser.add_argument(
        '--python-client',
        action='store_true',
        help='load with the bundled Python client even when wrk is there',
    )
    args = parser.parse_args()
    selected = [
        name for value in args.only for name in value.split(',') if name
    ] or list(SCENARIOS)
    unknown = [name for name in selected if name not in SCENARIOS]
    if unknown:
        parser.error(f'unknown scenarios {unknown}; have {list(SCENARIOS)}')
    if args.rounds < 1:
        parser.error('--rounds must be at least 1')
    if args.duration is None:
        args.duration = 3.0 if args.paired else 1.5
    if args.duration <= 0:
        parser.error('--duration must be positive')
    use_wrk = shutil.which('wrk') is not None and not args.python_client
    others: set[int] = set()
    if args.pin:
        try:
            others = pin()
        except ValueError as error:
            parser.error(str(error))
    load = wrk_load if use_wrk else python_load
    print(f'served: {describe_machine()}')
    print(
        f'  {args.rounds} rounds of {args.duration:g} s per contender, '
        + (
            "a scenario's contenders loaded at once"
            if args.paired
            else 'one contender after the other'
        )
        + f', GET {PATH}, '
        + (
            f'wrk -t1 -c{CONNECTIONS}'
            if use_wrk
            else f'the Python client, {CONNECTIONS} connections (no wrk)'
        )
        + '; CPU of the server process tree per request'
        + (
            f'; servers on core {PIN_SERVERS[-1]}, the rest on {PIN_LOAD[-1]}'
            if PIN_SERVERS
            else ''
        )
    )
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        temporary = stack.enter_context(
            tempfile.TemporaryDirectory(prefix='served-')
        )
        influx = stack.enter_context(InfluxServer())
        if args.pin:
            pin_tree(influx.pid, others)
        made = stack.enter_context(servers(selected, influx, Path(temporary)))
        warm_up = min(args.duration, 0.5)
        for group in made.values():  # warm up, writer and pools too
            if args.paired:
                paired_window(group, influx, warm_up, load)
            else:
                for server in group:
                    window(server, influx, warm_up, load)
            for server in group:
                server.cpu.clear()
                server.rates.clear()
        for index in range(args.rounds):
            for group in made.values():
                if args.paired:
                    figures = paired_window(group, influx, args.duration, load)
                    for server in group:
                        cpu, rate = figures[server.contender]
                        server.cpu.append(cpu)
                        server.rates.append(rate)
                    continue
                for server in rotated(group, index):  # type: ignore[arg-type]
                    cpu, rate = window(server, influx, args.duration, load)
                    server.cpu.append(cpu)
                    server.rates.append(rate)
        for group in made.values():
            for server in group:
                server.stop()
        print(f'  ({time.monotonic() - started:.0f} s)')
        results = [
            report(scenario, group, influx) for scenario, group in made.items()
        ]
    met = all(ok for _, ok in results)
    print(
        'served: '
        + '; '.join(summary for summary, _ in results)
        + f' (target: at most half of the best competitor): {verdict(met)}'
    )


if __name__ == '__main__':
    main()
