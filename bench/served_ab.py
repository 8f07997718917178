"""Served A/B: two checkouts of this library side by side, served.

For a change to the request path whose effect is smaller than what
separates two runs of ``bench/served.py``: the benchmark's application
(``bench/_served_app.py``) of one of its scenarios (``--scenario``:
``tornado`` by default, ``starlette`` or ``fastapi`` under uvicorn,
``flask-sync`` or ``flask-gthread`` under gunicorn) is served by one
process tree per variant, each variant a checkout of the repository (its
own ``sprockets_influxdb``, built in place, and its own
``_served_app.py``) and a contender of that scenario (``bare``,
``ours``, ``historical``, ``prometheus``...).  All the servers run on
the first core, ``wrk``, ``influxd`` and this script on the others
(``bench/served.py --pin``'s placement), and every round loads them all
at once for the same time, so that whatever the machine does during a
round it does to every variant.

Per round, the CPU of each server's threads (``/proc/<pid>/task/*/
schedstat``, nanoseconds), read before the load and after a pause that
lets the writers deliver the round's points, is divided by the requests
``wrk`` counted (``bench/served.py``'s load, CPU and count of stored
points are used as they are). Printed: for each variant the median of its
per-round difference to the first variant's (the baseline, usually
``bare``) with an interval holding that median with 90% probability
(``bench/served.py``'s), the per-round differences, and the CPU of its
threads other than the main ones (the library's writer; gthread's
workers) per request.  At the end every server is stopped and the
points stored for each variant that records (``ours``) must be at least
the requests it answered.

.. code-block:: console

   $ git worktree add /tmp/before HEAD~1
   $ (cd /tmp/before && python setup.py build_ext --inplace)
   $ python bench/served_ab.py bare=.:bare after=.:ours before=/tmp/before:ours

A variant may set environment variables of its server after its
contender, each after a ``+``: ``idle=.:ours+INFLUXDB_INTERVAL=600000``
serves ``ours`` with a writer that waits ten minutes between batches.

Needs ``wrk``, ``taskset`` and ``influxd`` (Debian: ``apt-get install
wrk util-linux influxdb``), and two cores at least.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import signal
import statistics
import subprocess
import time
from pathlib import Path

import served
from _common import median_interval
from served import InfluxServer, Load, stored, tree_cpu_ns, wrk_load

from tests.servers import free_port


def main_thread_seconds(pid: int) -> float:
    """CPU seconds of the main threads of *pid* and its descendants (a
    gunicorn master's and its worker's): what is left of the tree's is
    the other threads' (the library's writer, gthread's workers)."""
    total = 0
    for current in served.tree(pid):
        try:
            with open(f'/proc/{current}/task/{current}/schedstat', 'rb') as f:
                total += int(f.read().split()[0])
        except OSError:
            continue  # gone
    return total / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'variants',
        nargs='+',
        metavar='NAME=TREE:CONTENDER[+VARIABLE=VALUE...]',
        help='the first is the baseline',
    )
    parser.add_argument('--rounds', type=int, default=11)
    parser.add_argument('--seconds', type=float, default=3.0)
    parser.add_argument(
        '--scenario', choices=sorted(served.SCENARIOS), default='tornado'
    )
    args = parser.parse_args()
    framework, kind, contenders = served.SCENARIOS[args.scenario]
    for tool in ('wrk', 'influxd'):
        if shutil.which(tool) is None:
            raise SystemExit(f'served_ab: {tool} is missing')
    try:
        others = served.pin()
    except ValueError as error:
        raise SystemExit(f'served_ab: {error}') from None
    variants: list[tuple[str, Path, str, list[str]]] = []
    for spec in args.variants:
        name, _, rest = spec.partition('=')
        rest, *extra = rest.split('+')
        if not all('=' in item for item in extra):
            raise SystemExit(f'served_ab: not VARIABLE=VALUE: {spec}')
        tree, _, contender = rest.rpartition(':')
        path = Path(tree).resolve()
        if not name or not (path / 'bench' / '_served_app.py').exists():
            raise SystemExit(f'served_ab: not NAME=TREE:CONTENDER: {spec}')
        if contender not in contenders:
            raise SystemExit(
                f'served_ab: {args.scenario} has no contender {contender!r}'
                f' (it has {", ".join(contenders)})'
            )
        variants.append((name, path, contender, extra))

    with InfluxServer() as influx:
        served.pin_tree(influx.pid, others)
        servers: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
        answered = dict.fromkeys([name for name, _, _, _ in variants], 0)
        try:
            for name, tree, contender, extra in variants:
                database = f'ab_{name}'
                influx.create_database(database)
                port = free_port()
                env = dict(
                    os.environ,
                    SERVED_FRAMEWORK=framework,
                    SERVED_CONTENDER=contender,
                    SERVED_DATABASE=database,
                    INFLUXDB_URL=influx.url,
                    INFLUXDB_INTERVAL=str(served.INTERVAL_MS),
                    PYTHONPATH=str(tree),
                )
                for item in extra:
                    key, _, value = item.partition('=')
                    env[key] = value
                command = [
                    *served.PIN_SERVERS,
                    *served.server_command(kind, tree / 'bench', port),
                ]
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

            def window(seconds: float) -> dict[str, tuple[float, float]]:
                """Each variant's CPU per request: all threads, and all
                but the main one, in microseconds."""
                pids = {name: p.pid for name, (_, p) in servers.items()}
                seen: set[tuple[int, int]] = set()
                before = {
                    name: (tree_cpu_ns(pid, seen), main_thread_seconds(pid))
                    for name, pid in pids.items()
                }
                with concurrent.futures.ThreadPoolExecutor(len(pids)) as pool:
                    futures = {
                        name: pool.submit(wrk_load, port, seconds)
                        for name, (port, _) in servers.items()
                    }
                    loads: dict[str, Load] = {
                        name: future.result()
                        for name, future in futures.items()
                    }
                time.sleep(1.2)  # the writers deliver the round's points
                result = {}
                for name, pid in pids.items():
                    load = loads[name]
                    if load.errors or not load.requests:
                        raise SystemExit(f'served_ab: {name}: {load.errors}')
                    answered[name] += load.requests
                    total = tree_cpu_ns(pid, seen) - before[name][0]
                    main = main_thread_seconds(pid) - before[name][1]
                    result[name] = (
                        total / load.requests * 1e6,
                        (total - main) / load.requests * 1e6,
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
            f'served_ab: {args.rounds} rounds of {args.seconds:g} s, '
            f'{args.scenario}, all servers on core {served.PIN_SERVERS[-1]}; '
            f'CPU per request over {base}'
        )
        for name, _, contender, _ in variants:
            differences = [r[name][0] - r[base][0] for r in rounds]
            writer = statistics.median(r[name][1] for r in rounds)
            cpu = statistics.median(r[name][0] for r in rounds)
            low, high = median_interval(differences)
            line = (
                f'  {name:10s} {cpu:7.1f} us'
                f'  {statistics.median(differences):+6.1f} us'
                f' [{low:+.1f}, {high:+.1f}]'
                f'  other threads {writer:4.1f} us'
                f'  rounds {" ".join(f"{d:+.0f}" for d in differences)}'
            )
            if contender == 'ours':
                count = stored(influx, f'ab_{name}')
                line += f'  stored {count:,} of {answered[name]:,}'
                if count < answered[name]:
                    line += ' (MISSING)'
            print(line)


if __name__ == '__main__':
    main()
