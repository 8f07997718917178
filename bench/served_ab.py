"""Served A/B: two checkouts of this library side by side, under Tornado.

For a change to the request path whose effect is smaller than what
separates two runs of ``bench/served.py``: the benchmark's Tornado
application (``bench/_served_app.py``) is served by one process per
variant, each variant a checkout of the repository (its own
``sprockets_influxdb``, built in place, and its own ``_served_app.py``)
and a contender of that application (``bare``, ``ours``,
``historical``).  All the servers run on the first core (``taskset``),
``wrk`` and ``influxd`` on the second, and every round loads them all at
once for the same time, so that whatever the machine does during a round
it does to every variant.

Per round, the CPU of each server's threads (``/proc/<pid>/task/*/
schedstat``, nanoseconds), read before the load and after a pause that
lets the writers deliver the round's points, is divided by the requests
``wrk`` counted.  Printed: for each variant the median of its per-round
difference to the first variant's (the baseline, usually ``bare``), the
per-round differences, and the CPU of its threads other than the main one
(the library's writer) per request.  At the end every server is stopped
and the points stored for each variant that records (``ours``) must be at
least the requests it answered.

.. code-block:: console

   $ git worktree add /tmp/before HEAD~1
   $ (cd /tmp/before && python setup.py build_ext --inplace)
   $ python bench/served_ab.py bare=.:bare after=.:ours before=/tmp/before:ours

Needs ``wrk``, ``taskset`` and ``influxd`` (Debian: ``apt-get install
wrk util-linux influxdb``), and two cores at least.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import InfluxServer, free_port  # noqa: E402

CONNECTIONS = 8


def thread_cpu(pid: int) -> tuple[int, int]:
    """Nanoseconds of CPU of *pid*'s threads: all of them, and all but
    the main one."""
    total = others = 0
    for tid in os.listdir(f'/proc/{pid}/task'):
        try:
            with open(f'/proc/{pid}/task/{tid}/schedstat') as stat:
                spent = int(stat.read().split()[0])
        except OSError:  # a thread that ended meanwhile
            continue
        total += spent
        if int(tid) != pid:
            others += spent
    return total, others


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'variants',
        nargs='+',
        metavar='NAME=TREE:CONTENDER',
        help='the first is the baseline',
    )
    parser.add_argument('--rounds', type=int, default=11)
    parser.add_argument('--seconds', type=int, default=3)
    args = parser.parse_args()
    for tool in ('wrk', 'taskset', 'influxd'):
        if shutil.which(tool) is None:
            raise SystemExit(f'served_ab: {tool} is missing')
    if (os.cpu_count() or 1) < 2:
        raise SystemExit('served_ab: needs two cores')
    variants: list[tuple[str, Path, str]] = []
    for spec in args.variants:
        name, _, rest = spec.partition('=')
        tree, _, contender = rest.rpartition(':')
        path = Path(tree).resolve()
        if not name or not (path / 'bench' / '_served_app.py').exists():
            raise SystemExit(f'served_ab: not NAME=TREE:CONTENDER: {spec}')
        variants.append((name, path, contender))

    with InfluxServer() as influx:
        servers: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
        answered = dict.fromkeys([name for name, _, _ in variants], 0)
        try:
            for name, tree, contender in variants:
                database = f'ab_{name}'
                influx.create_database(database)
                port = free_port()
                env = dict(
                    os.environ,
                    SERVED_FRAMEWORK='tornado',
                    SERVED_CONTENDER=contender,
                    SERVED_DATABASE=database,
                    INFLUXDB_URL=influx.url,
                    INFLUXDB_INTERVAL='500',
                    PYTHONPATH=str(tree),
                )
                command = [
                    'taskset', '-c', '0', sys.executable,
                    str(tree / 'bench' / '_served_app.py'), str(port),
                ]  # fmt: skip
                servers[name] = (
                    port,
                    subprocess.Popen(
                        command,
                        env=env,
                        cwd=tree,
                        start_new_session=True,
                        stdout=subprocess.DEVNULL,
                    ),
                )
            time.sleep(3)

            def window(seconds: int) -> dict[str, tuple[float, float]]:
                before = {
                    n: thread_cpu(p.pid) for n, (_, p) in servers.items()
                }
                loads = {
                    name: subprocess.Popen(
                        [
                            'taskset',
                            '-c',
                            '1',
                            'wrk',
                            '-t1',
                            f'-c{CONNECTIONS}',
                            f'-d{seconds}s',
                            f'http://127.0.0.1:{port}/items/42',
                        ],
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                    for name, (port, _) in servers.items()
                }
                counts = {}
                for name, load in loads.items():
                    output = load.communicate()[0]
                    found = re.search(r'(\d+) requests in', output)
                    if load.returncode or not found:
                        raise SystemExit(f'served_ab: wrk failed: {output}')
                    counts[name] = int(found.group(1))
                    answered[name] += counts[name]
                time.sleep(1.2)  # the writers' interval is 0.5 s
                result = {}
                for name, (_, process) in servers.items():
                    total, others = thread_cpu(process.pid)
                    result[name] = (
                        (total - before[name][0]) / counts[name] / 1000,
                        (others - before[name][1]) / counts[name] / 1000,
                    )
                return result

            window(2)  # warm-up
            rounds = [window(args.seconds) for _ in range(args.rounds)]
        finally:
            for _, process in servers.values():
                process.send_signal(signal.SIGTERM)
            for _, process in servers.values():
                process.wait(60)
        base = variants[0][0]
        print(
            f'served_ab: {args.rounds} rounds of {args.seconds} s, Tornado, '
            f'all servers on core 0; CPU per request over {base}'
        )
        for name, _, contender in variants:
            differences = [r[name][0] - r[base][0] for r in rounds]
            writer = statistics.median(r[name][1] for r in rounds)
            cpu = statistics.median(r[name][0] for r in rounds)
            line = (
                f'  {name:10s} {cpu:7.1f} us'
                f'  {statistics.median(differences):+6.1f} us'
                f'  other threads {writer:4.1f} us'
                f'  rounds {" ".join(f"{d:+.0f}" for d in differences)}'
            )
            if contender == 'ours':
                payload = influx.query(
                    'SELECT COUNT("duration") FROM request', f'ab_{name}'
                )
                series = payload['results'][0].get('series')
                stored = int(series[0]['values'][0][1]) if series else 0
                line += f'  stored {stored:,} of {answered[name]:,}'
                if stored < answered[name]:
                    line += ' (MISSING)'
            print(line)


if __name__ == '__main__':
    main()
