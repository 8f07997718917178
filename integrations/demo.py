"""Demo: serve the example apps, drive requests, show what the servers stored.

Run it with ``bash .ci/demo`` (which installs what is needed) or, in a
prepared environment, ``python integrations/demo.py``.  It

1. starts a throwaway InfluxDB server (``influxd``) in a temporary directory;
2. records a burst of measurements through the documented module-level API
   (``install``, ``Measurement``, ``add_measurement``) from several
   threads, stopping the server in the middle and starting it again while
   the measurements keep coming;
3. serves each example application of ``integrations/`` as its own process
   (as a user runs it), all four at once, drives a mix of requests through
   them over HTTP for ten seconds, rising and falling (every route, path
   parameters, a stream, errors, unrouted paths), and stops them the way a
   process manager does (SIGTERM);
4. prints, from the server, what was stored per framework and endpoint:
   requests, status classes and duration percentiles;
5. writes an HTML report (``integrations/report.py``, ``--report PATH``,
   by default ``demo-report.html``) of what the server stored over those
   ten seconds: the duration percentiles of every endpoint and the
   requests by status class, over time, for each framework; and prints
   the InfluxQL it ran and the report's path;
6. starts a throwaway VictoriaMetrics (``victoria-metrics``), serves each
   example application again writing to it through the InfluxDB 2.x write
   API (``INFLUXDB_API=v2``), and prints the same table from what its
   export API gives back, with one of the series as it was stored.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import logging
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import typing
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import sprockets_influxdb as influxdb  # noqa: E402
from integrations import report as html_report  # noqa: E402
from tests.servers import InfluxServer, Series, VictoriaServer  # noqa: E402

DATABASE = 'demo'
ENDPOINTS = {
    # endpoint: (relative frequency, typical duration in seconds)
    '/': (40, 0.002),
    '/items/{item_id}': (30, 0.008),
    '/search': (15, 0.045),
    '/reports/{year}': (5, 0.250),
    '<unmatched>': (10, 0.001),
}

# A request to drive: path, extra headers, relative frequency.
Route = tuple[str, dict[str, str], int]


class App(typing.TypedDict):
    command: list[str]
    requests: list[Route]


# The example applications: how to serve them, and the requests to drive
# through them.
APPS: dict[str, App] = {
    'tornado': {
        'command': [sys.executable, 'integrations/tornado_app.py'],
        'requests': [
            ('/', {}, 30),
            ('/items/{n}', {}, 30),
            ('/api/users/{n}', {}, 15),
            ('/stream', {}, 3),
            ('/teapot', {}, 5),
            ('/error', {}, 3),
            ('/stats', {'Host': 'admin.local'}, 4),
            ('/no/such/page/{n}', {}, 10),
        ],
    },
    'starlette': {
        'command': [sys.executable, 'integrations/starlette_app.py'],
        'requests': [
            ('/', {}, 30),
            ('/items/{n}', {}, 30),
            ('/api/users/{n}', {}, 10),
            ('/api/v2/things/{n}', {}, 5),
            ('/stream', {}, 3),
            ('/background', {}, 3),
            ('/teapot', {}, 5),
            ('/error', {}, 3),
            ('/no/such/page/{n}', {}, 10),
        ],
    },
    'flask': {
        'command': [sys.executable, 'integrations/flask_app.py'],
        'requests': [
            ('/', {}, 30),
            ('/items/{n}', {}, 30),
            ('/api/users/{n}', {}, 15),
            ('/stream', {}, 3),
            ('/teapot', {}, 5),
            ('/error', {}, 3),
            ('/no/such/page/{n}', {}, 10),
        ],
    },
    'fastapi': {
        'command': [sys.executable, 'integrations/fastapi_app.py'],
        'requests': [
            ('/', {}, 30),
            ('/items/{n}', {}, 30),
            ('/api/users/{n}', {}, 10),
            ('/sub/things/{n}', {}, 5),
            ('/stream', {}, 3),
            ('/background', {}, 3),
            ('/teapot', {}, 5),
            ('/error', {}, 3),
            ('/no/such/page/{n}', {}, 10),
        ],
    },
}


def record_requests(count: int, worker: int, rng: random.Random) -> None:
    """Record *count* simulated requests the way a middleware would."""
    names = list(ENDPOINTS)
    weights = [ENDPOINTS[name][0] for name in names]
    for _ in range(count):
        endpoint = rng.choices(names, weights)[0]
        if endpoint == '<unmatched>':
            status = 404
        else:
            status = rng.choices([200, 201, 400, 500], [90, 5, 3, 2])[0]
        measurement = influxdb.Measurement(DATABASE, 'request')
        measurement.set_tags(
            {
                'method': 'GET',
                'endpoint': endpoint,
                'status_code': status,
                'status_class': f'{status // 100}xx',
                'worker': worker,
            }
        )
        typical = ENDPOINTS[endpoint][1]
        measurement.set_field('duration', rng.lognormvariate(0, 0.5) * typical)
        measurement.set_field('content_length', rng.randint(80, 4000))
        influxdb.add_measurement(measurement)
        time.sleep(0.0005)


def report(server: InfluxServer, database: str, measurement: str) -> None:
    """Print what the server stored, per endpoint."""
    result = server.query(
        'SELECT COUNT("duration") AS requests, '
        'PERCENTILE("duration", 50) AS p50, '
        'PERCENTILE("duration", 95) AS p95, '
        'PERCENTILE("duration", 99) AS p99 '
        f'FROM "{measurement}" GROUP BY endpoint',
        db=database,
    )
    classes = server.query(
        f'SELECT COUNT("duration") FROM "{measurement}" '
        'GROUP BY endpoint, status_class',
        db=database,
    )
    by_class: dict[str, dict[str, int]] = {}
    for series in classes['results'][0].get('series', []):
        tags = series['tags']
        by_class.setdefault(tags['endpoint'], {})[tags['status_class']] = (
            series['values'][0][1]
        )
    print()
    print(f'What InfluxDB stored in database {database!r}:')
    print()
    header = (
        f'{"endpoint":<26} {"requests":>8}  {"p50 ms":>7} {"p95 ms":>7} '
        f'{"p99 ms":>7}  status classes'
    )
    print(header)
    print('-' * len(header))
    total = 0
    for series in sorted(
        result['results'][0].get('series', []),
        key=lambda series: series['tags']['endpoint'],
    ):
        endpoint = series['tags']['endpoint']
        _, requests, p50, p95, p99 = series['values'][0]
        total += requests
        statuses = ', '.join(
            f'{name}: {number}'
            for name, number in sorted(by_class.get(endpoint, {}).items())
        )
        print(
            f'{endpoint:<26} {requests:>8}  {p50 * 1000:>7.1f} '
            f'{p95 * 1000:>7.1f} {p99 * 1000:>7.1f}  {statuses}'
        )
    print('-' * len(header))
    print(f'{"total":<26} {total:>8}')


def percentile(ordered: list[float], percent: float) -> float:
    """The nearest-rank percentile of sorted values, as InfluxQL's."""
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def write_report(
    server: InfluxServer,
    databases: list[str],
    path: str,
    window: tuple[int, int] | None = None,
) -> str | None:
    """Part 3: the HTML report of *databases*, read back from the server.

    Prints the InfluxQL it ran; returns the report's path, or None (and
    says how to install it) when plotly, the ``report`` extra, is missing.

    :param window: the time it covers (milliseconds since the epoch)
    """
    print()
    print('The HTML report (integrations/report.py) asked InfluxDB:')
    start_ms, end_ms = window or (None, None)
    collected = html_report.collect(
        lambda statement, database: server.query(statement, db=database),
        databases,
        start_ms=start_ms,
        end_ms=end_ms,
    )
    print(html_report.format_queries(collected))
    try:
        html_report.write_html(
            collected, path, f"The demo's throwaway InfluxDB ({server.url})"
        )
    except html_report.PlotlyMissingError as error:
        print()
        print(f'No HTML report: {error}')
        return None
    written = os.path.abspath(path)
    print(f'and wrote {written}')
    return written


def report_victoria(server: VictoriaServer, measurement: str) -> None:
    """Print what VictoriaMetrics stored for *measurement*, per endpoint.

    Its ``duration`` field is the series ``{measurement}_duration``, one
    per set of tags (labels); the percentiles are computed here from the
    exported samples.
    """
    found = server.series(f'{{__name__="{measurement}_duration"}}')
    durations: dict[str, list[float]] = {}
    by_class: dict[str, dict[str, int]] = {}
    for series in found:
        endpoint = series.labels['endpoint']
        durations.setdefault(endpoint, []).extend(series.values)
        classes = by_class.setdefault(endpoint, {})
        status_class = series.labels['status_class']
        classes[status_class] = classes.get(status_class, 0) + len(
            series.values
        )
    print()
    print(
        f'What VictoriaMetrics stored as {measurement}_duration '
        '(its export API):'
    )
    print()
    header = (
        f'{"endpoint":<26} {"requests":>8}  {"p50 ms":>7} {"p95 ms":>7} '
        f'{"p99 ms":>7}  status classes'
    )
    print(header)
    print('-' * len(header))
    total = 0
    for endpoint in sorted(durations):
        values = sorted(durations[endpoint])
        total += len(values)
        p50, p95, p99 = (percentile(values, p) * 1000 for p in (50, 95, 99))
        statuses = ', '.join(
            f'{name}: {number}'
            for name, number in sorted(by_class[endpoint].items())
        )
        print(
            f'{endpoint:<26} {len(values):>8}  {p50:>7.1f} {p95:>7.1f} '
            f'{p99:>7.1f}  {statuses}'
        )
    print('-' * len(header))
    print(f'{"total":<26} {total:>8}')
    errors = [series for series in found if 'error' in series.labels]
    if errors:
        print()
        print('One series as stored (labels, then the first samples):')
        show_series(errors[0])


def show_series(series: Series) -> None:
    """Print a series: its name and labels, a few (time, value) samples."""
    labels = ', '.join(f'{k}="{v}"' for k, v in sorted(series.labels.items()))
    print(f'  {series.name}{{{labels}}}')
    for stamp, value in series.points[:3]:
        when = time.strftime('%H:%M:%S', time.localtime(stamp / 1000))
        print(f'    {when}.{stamp % 1000:03d}  {value}')


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return int(probe.getsockname()[1])


def get(url: str, headers: dict[str, str]) -> int:
    """GET *url*; return the status (errors included, 0 for no answer)."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.read()
        return int(error.code)
    except (OSError, http.client.HTTPException):
        return 0


def serve_and_drive(
    name: str,
    settings: dict[str, str],
    count: int,
    rng: random.Random,
    duration: float = 0.0,
    together: threading.Barrier | None = None,
    say: typing.Callable[[str], None] = print,
) -> None:
    """Serve one example app, drive *count* requests through it, stop it.

    :param settings: the ``INFLUXDB_*`` variables (and ``SERVICE``) it is
        served with
    :param duration: the seconds over which the requests are spread, the
        traffic rising to twice the average rate halfway and falling off
        again (0: as fast as the client goes)
    :param together: waited on once the app answers, so that apps served
        at the same time are driven over the same seconds
    :param say: prints a line of what happened
    """
    app = APPS[name]
    port = free_port()
    environ = {
        **{
            key: value
            for key, value in os.environ.items()
            if not key.startswith(('INFLUXDB_', 'SERVICE'))
        },
        'PYTHONPATH': ROOT,
        'INFLUXDB_INTERVAL': '500',
        'REQUEST_DATABASE': name,
        'SERVICE': 'request',
        **settings,
    }
    # The app's output goes to a file: a pipe nobody reads until the end
    # would fill up with its error logs and stop the server.
    log = tempfile.TemporaryFile(mode='w+')  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [*app['command'], '--port', str(port)],
        cwd=ROOT,
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f'http://127.0.0.1:{port}'
    try:
        deadline = time.monotonic() + 20
        while not get(f'{base}/', {}):
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f'{name} app did not start:\n{log.read()}')
            time.sleep(0.05)
        if together is not None:
            together.wait(timeout=60)
        statuses = drive(base, app['requests'], count, rng, duration)
    except BaseException:
        if together is not None:
            together.abort()
        process.kill()
        process.wait()
        log.close()
        raise
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    # uvicorn ends by raising the SIGTERM it handled again.
    if process.returncode not in (0, -signal.SIGTERM):
        log.seek(0)
        say(log.read())
    log.close()
    over = f' over {duration:g} s' if duration else ''
    answered = ', '.join(
        f'{k or "no answer"}: {v}' for k, v in sorted(statuses.items())
    )
    say(f'Served the {name} example on {base}: {count} requests{over}')
    say(f'  the client got: {answered}')


def drive(
    base: str,
    routes: list[Route],
    count: int,
    rng: random.Random,
    duration: float,
) -> dict[int, int]:
    """Send *count* requests to the app at *base*; count the statuses."""
    weights = [weight for _, _, weight in routes]
    plan = [rng.choices(routes, weights)[0] for _ in range(count)]
    # When each request is sent, in seconds from the start: a triangle,
    # so that the charts of the HTML report show the load rise and fall.
    offsets = sorted(
        rng.triangular(0, duration, duration / 2) if duration else 0.0
        for _ in plan
    )
    paths = [route[0].format(n=rng.randint(1, 999)) for route in plan]
    statuses: dict[int, int] = {}
    started = time.monotonic()

    def send(index: int) -> int:
        delay = started + offsets[index] - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return get(base + paths[index], plan[index][1])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for status in pool.map(send, range(count)):
            statuses[status] = statuses.get(status, 0) + 1
    return statuses


def serve_and_drive_all(
    settings: typing.Callable[[str], dict[str, str]],
    count: int,
    duration: float,
    seed: int,
) -> tuple[int, int]:
    """Serve every example app at once and drive them over the same time.

    :param settings: the settings of an app, from its name
    :returns: when the driving started and ended (milliseconds since the
        epoch): the requests that check an app is up come before
    """
    print(
        f'Serving the example apps ({", ".join(APPS)}) at once, '
        f'{count} requests each over {duration:g} s...'
    )
    window: list[int] = []
    together = threading.Barrier(
        len(APPS), action=lambda: window.append(int(time.time() * 1000))
    )
    said: dict[str, list[str]] = {name: [] for name in APPS}
    with concurrent.futures.ThreadPoolExecutor(len(APPS)) as pool:
        runs = [
            pool.submit(
                serve_and_drive,
                name,
                settings(name),
                count,
                random.Random(seed + number),
                duration,
                together,
                said[name].append,
            )
            for number, name in enumerate(APPS)
        ]
        failures = [run.exception() for run in runs]
    # An app that did not start breaks the barrier of the others: its own
    # error is the one to show.
    for failure in sorted(
        (failure for failure in failures if failure is not None),
        key=lambda failure: isinstance(failure, threading.BrokenBarrierError),
    ):
        raise failure
    window.append(int(time.time() * 1000))
    for name in APPS:
        for line in said[name]:
            print(line)
    return window[0], window[1]


def record_through_an_outage(
    server: InfluxServer, requests: int, threads: int
) -> bool:
    """Part 1: the module-level API, with the server stopped for a while."""
    influxdb.install(
        server.url,
        submission_interval=200,
        trigger_size=500,
        base_tags={'service': 'demo'},
        backoff_max=1.0,
    )
    per_thread = requests // threads
    workers = [
        threading.Thread(
            target=record_requests,
            args=(per_thread, worker, random.Random(worker)),
        )
        for worker in range(threads)
    ]
    started = time.monotonic()
    print(
        f'Recording {per_thread * threads} measurements from {threads} '
        'threads through the module-level API...'
    )
    for worker in workers:
        worker.start()
    time.sleep(0.3)
    print('Stopping InfluxDB for a second while measurements keep coming:')
    server.stop()
    time.sleep(1.0)
    server.start()
    print('InfluxDB is back.')
    for worker in workers:
        worker.join()
    delivered = bool(influxdb.shutdown().result())
    elapsed = time.monotonic() - started
    stats = influxdb.stats()
    print(
        f'shutdown() delivered everything: {delivered} '
        f'({elapsed:.1f} s in all)'
    )
    print(
        f'Library counters: added={stats.added} written={stats.written} '
        f'dropped={stats.dropped_total} retries={stats.retries} '
        f'requests={stats.requests} failed requests={stats.failed_requests}'
    )
    report(server, DATABASE, 'request')
    return delivered


def through_victoria(count: int) -> None:
    """Part 3: every example app again, into VictoriaMetrics through v2."""
    with VictoriaServer() as victoria:
        print()
        print(f'Started a throwaway VictoriaMetrics at {victoria.url}')
        rng = random.Random(11)
        for name in APPS:
            print()
            settings = {
                'INFLUXDB_URL': victoria.url,
                'INFLUXDB_API': 'v2',
                # VictoriaMetrics does not map the bucket to a label: one
                # measurement per application keeps them apart.
                'SERVICE': name,
            }
            print(f'(writing through {victoria.url}/api/v2/write)')
            serve_and_drive(name, settings, count, rng)
            report_victoria(victoria, name)


def main() -> int:
    """Run the demo."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--measurements', type=int, default=4000)
    parser.add_argument('--threads', type=int, default=4)
    parser.add_argument(
        '--requests', type=int, default=800, help='requests per app'
    )
    parser.add_argument(
        '--duration',
        type=float,
        default=10.0,
        help='seconds over which the requests to the apps are spread',
    )
    parser.add_argument(
        '--report',
        default='demo-report.html',
        help='where the HTML report is written (default: %(default)s)',
    )
    parser.add_argument(
        '--victoria-requests',
        type=int,
        default=300,
        help='requests per app served into VictoriaMetrics (0: skip it)',
    )
    arguments = parser.parse_args()

    for executable, package in (
        ('influxd', 'influxdb'),
        ('victoria-metrics', 'victoria-metrics'),
    ):
        if shutil.which(executable) is None:
            print(
                f'{executable} is not installed. Install it with\n'
                f'    sudo apt-get install {package}\n'
                'or run the demo with "bash .ci/demo", which installs it.',
                file=sys.stderr,
            )
            return 1
    logging.basicConfig(
        level=logging.WARNING, format='  [%(name)s] %(levelname)s %(message)s'
    )
    with InfluxServer() as server:
        server.create_database(DATABASE)
        print(f'Started a throwaway InfluxDB at {server.url}')
        print()
        delivered = record_through_an_outage(
            server, arguments.measurements, arguments.threads
        )
        print()
        for name in APPS:
            server.create_database(name)
        window = serve_and_drive_all(
            lambda name: {'INFLUXDB_URL': server.url},
            arguments.requests,
            arguments.duration,
            seed=7,
        )
        for name in APPS:
            report(server, name, 'request')
        written = write_report(server, list(APPS), arguments.report, window)
    if arguments.victoria_requests:
        through_victoria(arguments.victoria_requests)
    if written:
        print()
        print(f'The HTML report: {written}')
    return 0 if delivered else 1


if __name__ == '__main__':
    sys.exit(main())
