"""Demo: record measurements through an outage and show what InfluxDB stored.

Run it with ``bash .ci/demo`` (which installs what is needed) or, in a
prepared environment, ``python integrations/demo.py``.  It

1. starts a throwaway InfluxDB server (``influxd``) in a temporary directory;
2. records a burst of simulated HTTP request measurements through the
   documented module-level API (``install``, ``Measurement``,
   ``add_measurement``) from several threads;
3. stops the server in the middle and starts it again, while the
   measurements keep coming;
4. calls ``shutdown()`` and prints, from the server, what was stored per
   endpoint (requests, status classes, duration percentiles), next to the
   library's own counters.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import sprockets_influxdb as influxdb  # noqa: E402
from tests.servers import InfluxServer  # noqa: E402

DATABASE = 'demo'
ENDPOINTS = {
    # endpoint: (relative frequency, typical duration in seconds)
    '/': (40, 0.002),
    '/items/{item_id}': (30, 0.008),
    '/search': (15, 0.045),
    '/reports/{year}': (5, 0.250),
    '<unmatched>': (10, 0.001),
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


def report(server: InfluxServer) -> None:
    """Print what the server stored, per endpoint."""
    result = server.query(
        'SELECT COUNT("duration") AS requests, '
        'PERCENTILE("duration", 50) AS p50, '
        'PERCENTILE("duration", 95) AS p95, '
        'PERCENTILE("duration", 99) AS p99 '
        'FROM request GROUP BY endpoint',
        db=DATABASE,
    )
    classes = server.query(
        'SELECT COUNT("duration") FROM request '
        'GROUP BY endpoint, status_class',
        db=DATABASE,
    )
    by_class: dict[str, dict[str, int]] = {}
    for series in classes['results'][0].get('series', []):
        tags = series['tags']
        by_class.setdefault(tags['endpoint'], {})[tags['status_class']] = (
            series['values'][0][1]
        )
    print()
    print(
        f'What InfluxDB stored in database {DATABASE!r}, measurement request:'
    )
    print()
    header = (
        f'{"endpoint":<20} {"requests":>8}  {"p50 ms":>7} {"p95 ms":>7} '
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
            f'{endpoint:<20} {requests:>8}  {p50 * 1000:>7.1f} '
            f'{p95 * 1000:>7.1f} {p99 * 1000:>7.1f}  {statuses}'
        )
    print('-' * len(header))
    print(f'{"total":<20} {total:>8}')


def main() -> int:
    """Run the demo."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--requests', type=int, default=4000)
    parser.add_argument('--threads', type=int, default=4)
    arguments = parser.parse_args()

    if shutil.which('influxd') is None:
        print(
            'influxd is not installed. Install the InfluxDB 1.x server with\n'
            '    sudo apt-get install influxdb\n'
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
        influxdb.install(
            server.url,
            submission_interval=200,
            trigger_size=500,
            base_tags={'service': 'demo'},
            backoff_max=1.0,
        )
        per_thread = arguments.requests // arguments.threads
        workers = [
            threading.Thread(
                target=record_requests,
                args=(per_thread, worker, random.Random(worker)),
            )
            for worker in range(arguments.threads)
        ]
        started = time.monotonic()
        print(
            f'Recording {per_thread * arguments.threads} requests from '
            f'{arguments.threads} threads...'
        )
        for worker in workers:
            worker.start()
        time.sleep(0.3)
        print('Stopping InfluxDB for a second while requests keep coming:')
        server.stop()
        time.sleep(1.0)
        server.start()
        print('InfluxDB is back.')
        for worker in workers:
            worker.join()
        delivered = influxdb.shutdown().result()
        elapsed = time.monotonic() - started
        stats = influxdb.stats()
        print(
            f'shutdown() delivered everything: {delivered} '
            f'({elapsed:.1f} s in all)'
        )
        print(
            f'Library counters: added={stats.added} written={stats.written} '
            f'dropped={stats.dropped_total} retries={stats.retries} '
            f'requests={stats.requests} failed requests='
            f'{stats.failed_requests}'
        )
        report(server)
    return 0 if delivered else 1


if __name__ == '__main__':
    sys.exit(main())
