"""Instructions of the writer thread per batch and per point, by callgrind.

A profiling aid, not one of ``bench/run``'s benchmarks, for the work the
writer thread does off the request path (``bench/instructions.py``
counts the request path itself).  A child process installs the library
against a throwaway ``influxd`` (a 20 ms submission interval, every other
setting at its default), and *K* times adds *P* points shaped as a request's
(``bench/_served_app.py``'s tags, ``duration`` and ``content_length``;
with ``--shape request`` recorded as the integrations record a request,
through a ``RequestRecorder``, whose requests of a route share one dict
of tags) then waits until the writer has delivered them: each time one batch,
sent as the timer sends it, with the HTTP exchange and its answer.  It
runs under ``valgrind --tool=callgrind --separate-threads=yes`` (address
randomization off with ``setarch -R``), and the writer thread's count is
read alone.

With one point per batch, the difference between *2K* and *K* batches
divided by *K* is the cost of a batch whatever it carries (waking up,
the request and its answer, the bookkeeping); with *P* points, the cost
of a batch of *P*, and from the two the cost of each point (taking it
from the buffer, encoding it, joining it into the body, settling it).

.. code-block:: console

   $ python bench/writer_instructions.py               # P = 300, K = 20
   $ python bench/writer_instructions.py --points 1000 --functions 20
   $ python bench/writer_instructions.py --shape request --functions 20

Needs valgrind and influxd (Debian: ``apt-get install valgrind
influxdb``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATABASE = 'writer_instructions'


def child(url: str, batches: int, points: int, shape: str) -> None:
    """Send *batches* batches of *points* points each (the process
    valgrind runs), after 5 batches of warm-up."""
    sys.path.insert(0, str(ROOT))
    import sprockets_influxdb
    from sprockets_influxdb.request_metrics import RequestRecorder

    sprockets_influxdb.install(url=url, submission_interval=20)
    recorder = RequestRecorder(DATABASE, 'request')
    added = 0

    def batch() -> None:
        nonlocal added
        for _ in range(points):
            if shape == 'request':
                record = recorder.start('GET', '/items/42')
                assert record is not None
                record.finish(
                    200,
                    endpoint='/items/{item_id}',
                    handler='_served_app.read_item',
                    content_length=48,
                )
                added += 1
                continue
            point = sprockets_influxdb.Measurement(DATABASE, 'request')
            point.set_tags(
                {
                    'method': 'GET',
                    'endpoint': '/items/{item_id}',
                    'handler': '_served_app.read_item',
                    'status_code': '200',
                    'status_class': '2xx',
                }
            )
            point.set_field('duration', 0.000734 + added * 1e-9)
            point.set_field('content_length', 48)
            sprockets_influxdb.add_measurement(point)
            added += 1
        deadline = time.monotonic() + 120
        while sprockets_influxdb.stats().written < added:
            if time.monotonic() > deadline:
                raise SystemExit('writer_instructions: nothing delivered')
            time.sleep(0.002)

    for _ in range(5):
        batch()
    for _ in range(batches):
        batch()
    if not sprockets_influxdb.shutdown().result(60):
        raise SystemExit('writer_instructions: shutdown lost points')


def writer_costs(
    url: str,
    batches: int,
    points: int,
    shape: str,
    functions: dict[str, int] | None,
) -> int:
    """Instructions of the writer thread of a child sending *batches*
    batches of *points* of *shape* (each function's own, into
    *functions*)."""
    aslr_off = ['setarch', '-R'] if shutil.which('setarch') else []
    with tempfile.TemporaryDirectory() as directory:
        out = os.path.join(directory, 'callgrind.out')
        done = subprocess.run(
            [
                *aslr_off,
                'valgrind',
                '--tool=callgrind',
                '--separate-threads=yes',
                f'--callgrind-out-file={out}',
                sys.executable,
                os.path.abspath(__file__),
                '--child',
                url,
                str(batches),
                str(points),
                shape,
            ],
            env=dict(os.environ, PYTHONHASHSEED='0'),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        # One file per thread (out-01 the main thread): the writer's is
        # the busiest of the others.
        counts = {}
        for name in os.listdir(directory):
            found = re.fullmatch(r'callgrind\.out-(\d+)', name)
            if found and found.group(1) != '01':
                path = os.path.join(directory, name)
                with open(path, encoding='utf-8', errors='replace') as data:
                    total = re.search(
                        r'^(?:summary|totals): (\d+)', data.read(), re.M
                    )
                if total:
                    counts[path] = int(total.group(1))
        if not counts:
            raise SystemExit('writer_instructions: no writer thread counted')
        writer = max(counts, key=counts.__getitem__)
        if functions is not None:
            from instructions import own_costs

            functions.update(own_costs(writer))
        return counts[writer]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batches', type=int, default=20, metavar='K')
    parser.add_argument('--points', type=int, default=300, metavar='P')
    parser.add_argument(
        '--functions',
        type=int,
        default=0,
        metavar='N',
        help='the N functions with the most own instructions per point',
    )
    parser.add_argument(
        '--shape',
        choices=('measurement', 'request'),
        default='measurement',
        help='points made with Measurement, or recorded as the '
        'integrations record a request (their tags shared, as '
        'RequestRecorder shares them)',
    )
    parser.add_argument('--child', nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, batches, points, shape = args.child
        child(url, int(batches), int(points), shape)
        return
    for tool in ('valgrind', 'influxd'):
        if shutil.which(tool) is None:
            raise SystemExit(f'writer_instructions: {tool} is missing')
    if args.points < 2 or args.batches < 1:
        raise SystemExit('writer_instructions: --points 2 or more')
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(BENCH))
    from tests.servers import InfluxServer

    k, p = args.batches, args.points
    with InfluxServer() as influx:
        influx.create_database(DATABASE)
        per_batch = {}
        by_function: dict[int, dict[str, float]] = {}
        for size in (1, p):
            few: dict[str, int] = {}
            many: dict[str, int] = {}
            wanted = args.functions > 0
            small = writer_costs(
                influx.url, k, size, args.shape, few if wanted else None
            )
            large = writer_costs(
                influx.url, 2 * k, size, args.shape, many if wanted else None
            )
            per_batch[size] = (large - small) / k
            by_function[size] = {
                name: (many.get(name, 0) - few.get(name, 0)) / k
                for name in set(few) | set(many)
            }
    point = (per_batch[p] - per_batch[1]) / (p - 1)
    fixed = per_batch[1] - point
    print(
        f'writer thread: {fixed:,.0f} instructions per batch, '
        f'{point:,.0f} per point (batches of 1: {per_batch[1]:,.0f}; '
        f'of {p}: {per_batch[p]:,.0f}, {per_batch[p] / p:,.0f} a point)'
    )
    if args.functions:
        one, full = by_function[1], by_function[p]
        costs = sorted(
            (
                (full.get(name, 0.0) - one.get(name, 0.0)) / (p - 1),
                name,
            )
            for name in set(one) | set(full)
        )
        print(f'  own instructions per point, the {args.functions} most:')
        for value, name in reversed(costs[-args.functions :]):
            print(f'    {value:+9,.0f}  {name}')


if __name__ == '__main__':
    main()
