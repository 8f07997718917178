"""Host-metrics delivery from a fresh process, against a bare loop.

The classic host-metrics workload: measurement ``cpu``, tags ``host`` (100
values) and ``region`` (4, one per host), fields ``usage_user`` and
``usage_system`` (floats) and ``count`` (an integer), and an explicit time
set with ``set_timestamp(seconds_as_float)``, a millisecond apart from one
point to the next so that the server stores every one of them.  The
script starts its own throwaway ``influxd`` (the ``InfluxServer`` of
``tests/servers.py``) and, each round, runs each contender in a **fresh
Python process** writing N points (default 100,000) to a database of its
own:

* ours: the child imports ``sprockets_influxdb`` and draws the values of
  the N points (host, region, the three fields, the time), then the clock
  starts.  Timed: ``install(url, max_buffer_size=N)`` (every other
  setting at its default: ``trigger_size`` 5000, ``max_batch_size``
  10000, ``max_clients`` 10, ``ns`` precision; the buffer is made big
  enough for N so that nothing is dropped), then for each point building
  the ``Measurement`` (``set_tag`` twice, ``set_field`` three times,
  ``set_timestamp``) and ``add_measurement``, then ``flush()`` until its
  future resolves.  The writer thread is started by the first
  measurement, so its start-up, its first connection and all the encoding
  are inside the clock; the import of the package is not (it is printed
  apart, as is each child's whole life measured by the parent).
* bare loop: the same lines, encoded by the library in the parent and
  joined into bodies of 5000, are read by the child before the clock
  starts.  Timed: connecting one ``http.client`` connection and posting
  the bodies one after the other (``POST /write?db=...&precision=n``, each
  response read before the next request).

For ours it also prints the CPU time of the application thread (from
``install()`` to the end of ``flush()``) and of the writer thread (all of
its life until then: encoding, batching, HTTP), each per point.

After each run the parent counts the points stored with a ``COUNT``
query: a run that stored fewer points than it sent is a failure, not a
figure (the script exits non-zero).  The contenders alternate round by
round (the order rotates); the ratio printed is the median of the bare
loop's time over ours.  Target (issue 13, SPEC section 9): at least 0.8.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, describe_machine, median, rotated, verdict

TARGET = 0.8
BATCH = 5000
HOSTS = 100
REGIONS = ('us-east-1', 'us-west-2', 'eu-west-1', 'ap-southeast-2')
MEASUREMENT = 'cpu'
SEED = 13


def workload(
    number: int, start: int
) -> list[tuple[str, str, float, float, int, float]]:
    """The values of *number* points: host, region, fields and time.

    :param number: how many points
    :param start: the whole second the first point is at
    """
    rng = random.Random(SEED)
    hosts = [f'host-{index:03d}' for index in range(HOSTS)]
    points = []
    for index in range(number):
        host = index % HOSTS
        points.append(
            (
                hosts[host],
                REGIONS[host % len(REGIONS)],
                rng.uniform(0, 100),
                rng.uniform(0, 100),
                rng.randrange(1_000_000),
                # A millisecond apart: an exact decimal number of seconds.
                (start * 1000 + index) / 1000,
            )
        )
    return points


def ours(url: str, database: str, number: int, start: int) -> dict[str, float]:
    """One run of the library, in this (fresh) process."""
    began = time.perf_counter()
    import sprockets_influxdb as influxdb

    imported = time.perf_counter() - began
    points = workload(number, start)
    new = influxdb.Measurement
    add = influxdb.add_measurement
    clock = time.perf_counter()
    cpu = time.thread_time()
    influxdb.install(url=url, max_buffer_size=number)
    for host, region, user, system, count, when in points:
        measurement = new(database, MEASUREMENT)
        measurement.set_tag('host', host)
        measurement.set_tag('region', region)
        measurement.set_field('usage_user', user)
        measurement.set_field('usage_system', system)
        measurement.set_field('count', count)
        measurement.set_timestamp(when)
        add(measurement)
    added = time.perf_counter() - clock
    delivered = influxdb.flush(timeout=120).result()
    elapsed = time.perf_counter() - clock
    app_cpu = time.thread_time() - cpu
    stats = influxdb.stats()
    return {
        'elapsed': elapsed,
        'added': added,
        'app_cpu': app_cpu,
        'writer_cpu': writer_cpu(influxdb.default_client()),
        'import': imported,
        'delivered': float(delivered),
        'dropped': float(stats.dropped_total),
        'requests': float(stats.requests),
    }


def writer_cpu(client: object) -> float:
    """The CPU time the client's writer thread used so far, in seconds."""
    thread = client._writer._thread  # type: ignore[attr-defined]
    if thread is None or thread.ident is None:
        return float('nan')
    try:
        clock = time.pthread_getcpuclockid(thread.ident)
        return time.clock_gettime(clock)
    except (AttributeError, OSError):  # not on this platform
        return float('nan')


def bare(url: str, database: str, bodies_path: str) -> dict[str, float]:
    """One run of the bare loop, in this (fresh) process."""
    import http.client
    import urllib.parse

    bodies = json.loads(Path(bodies_path).read_text(encoding='utf-8'))
    bodies = [body.encode('utf-8') for body in bodies]
    parts = urllib.parse.urlsplit(url)
    path = f'/write?db={database}&precision=n'
    headers = {'Content-Type': 'text/plain; charset=utf-8'}
    clock = time.perf_counter()
    connection = http.client.HTTPConnection(
        parts.hostname or '127.0.0.1', parts.port, timeout=120
    )
    connection.connect()
    for body in bodies:
        connection.request('POST', path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 204:
            raise RuntimeError(f'bare loop: HTTP {response.status}')
    elapsed = time.perf_counter() - clock
    connection.close()
    return {'elapsed': elapsed, 'requests': float(len(bodies))}


def child(args: argparse.Namespace) -> None:
    if args.child == 'ours':
        result = ours(args.url, args.database, args.number, args.start)
    else:
        result = bare(args.url, args.database, args.bodies)
    print(json.dumps(result))


def encode_bodies(number: int, start: int) -> list[str]:
    """The lines ours writes, encoded by the library, in bodies of BATCH."""
    import sprockets_influxdb as influxdb

    lines = []
    for host, region, user, system, count, when in workload(number, start):
        measurement = influxdb.Measurement('unset', MEASUREMENT)
        measurement.set_tag('host', host)
        measurement.set_tag('region', region)
        measurement.set_field('usage_user', user)
        measurement.set_field('usage_system', system)
        measurement.set_field('count', count)
        measurement.set_timestamp(when)
        lines.append(measurement.marshall('ns'))
    return [
        '\n'.join(lines[index : index + BATCH])
        for index in range(0, len(lines), BATCH)
    ]


def run_child(arguments: list[str]) -> tuple[dict[str, float], float]:
    """Run this script as a child; its result and its whole wall time."""
    began = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, __file__, *arguments],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    wall = time.perf_counter() - began
    if completed.returncode != 0:
        raise SystemExit(
            f'host_metrics: the child {arguments[:2]} failed '
            f'({completed.returncode}):\n{completed.stderr}'
        )
    result: dict[str, float] = json.loads(completed.stdout.splitlines()[-1])
    return result, wall


def count(server: object, database: str) -> int:
    """The number of points stored in *database*."""
    payload = server.query(  # type: ignore[attr-defined]
        f'SELECT COUNT("usage_user") FROM "{MEASUREMENT}"', db=database
    )
    series = payload['results'][0].get('series')
    return int(series[0]['values'][0][1]) if series else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--number', type=int, default=100_000)
    parser.add_argument('--child', choices=('ours', 'bare'))
    parser.add_argument('--url')
    parser.add_argument('--database')
    parser.add_argument('--start', type=int, default=0)
    parser.add_argument('--bodies')
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from tests.servers import InfluxServer

    print(f'host_metrics: {describe_machine()}')
    print(
        f'  {args.rounds} rounds of {args.number:,} points per contender, '
        f'each in a fresh process; bare loop batches of {BATCH}'
    )
    # Two days ago, in whole seconds: well inside any retention.
    start = int(time.time()) - 2 * 86400
    bodies = encode_bodies(args.number, start)
    failures = []
    times: dict[str, list[float]] = {'ours': [], 'bare loop': []}
    walls: dict[str, list[float]] = {'ours': [], 'bare loop': []}
    extra: list[dict[str, float]] = []
    with (
        tempfile.NamedTemporaryFile('w', suffix='.json') as bodies_file,
        InfluxServer() as server,
    ):
        json.dump(bodies, bodies_file)
        bodies_file.flush()
        common = ['--url', server.url, '--number', str(args.number)]
        common += ['--start', str(start), '--bodies', bodies_file.name]
        # One unmeasured run of each: the server's first writes and the
        # page cache are not anybody's figure.
        for index in range(args.rounds + 1):
            for contender in rotated(['ours', 'bare loop'], index):
                database = f'hm_{contender.split()[0]}_{index}'
                server.create_database(database)
                kind = 'ours' if contender == 'ours' else 'bare'
                result, wall = run_child(
                    ['--child', kind, '--database', database, *common]
                )
                stored = count(server, database)
                server.drop_database(database)
                if stored != args.number:
                    failures.append(
                        f'round {index}: {contender} stored {stored} of '
                        f'{args.number} points ({result})'
                    )
                if index == 0:
                    continue
                times[contender].append(result['elapsed'])
                walls[contender].append(wall)
                if kind == 'ours':
                    extra.append(result)
            if index:
                print(
                    f'  round {index}: ours '
                    f'{times["ours"][-1]:.3f} s, bare loop '
                    f'{times["bare loop"][-1]:.3f} s -> '
                    f'{times["bare loop"][-1] / times["ours"][-1]:.2f}'
                )
    ratios = [b / o for b, o in zip(times['bare loop'], times['ours'])]
    for contender, values in times.items():
        print(
            f'  {contender:9} median {median(values):.3f} s '
            f'({args.number / median(values):,.0f} points/s); the whole '
            f'child process {median(walls[contender]):.3f} s'
        )
    print(
        f'  ours: import {median([r["import"] for r in extra]) * 1000:.0f}'
        f' ms (not timed), install and adding '
        f'{median([r["added"] for r in extra]):.3f} s, '
        f'{median([r["requests"] for r in extra]):.0f} requests'
    )
    app = median([r['app_cpu'] for r in extra])
    writer = median([r['writer_cpu'] for r in extra])
    print(
        f'  ours: CPU of the application thread {app:.3f} s '
        f'({app / args.number * 1e6:.2f} us a point), of the writer thread '
        f'{writer:.3f} s ({writer / args.number * 1e6:.2f} us a point)'
    )
    print(
        f'  ratio per round {", ".join(f"{r:.2f}" for r in ratios)}; whole '
        f'processes {median(walls["bare loop"]) / median(walls["ours"]):.2f}'
    )
    for failure in failures:
        print(f'  FAILURE: {failure}')
    ratio = median(ratios)
    print(
        f'host_metrics: bare loop time / ours, median of {args.rounds} '
        f'rounds: {ratio:.2f} (target >= {TARGET}'
        f'{"" if not failures else ", and every point stored"}): '
        f'{verdict(ratio >= TARGET and not failures)}'
    )
    if failures:
        raise SystemExit(1)


if __name__ == '__main__':
    main()
