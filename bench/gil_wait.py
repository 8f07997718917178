"""How long an application thread waits for the GIL through an outage.

The writer thread shares the GIL with the application's threads: whatever
it does while riding out an outage and catching up afterwards (retries,
joining a large backlog into one body, requeueing) can only slow a
request down by making the request's thread wait for the GIL.  This
measures that wait directly, in two processes run at the same time: one
records 300 measurements/s through the library, the other runs the same
loop with the library disabled (``INFLUXDB_ENABLED=false``).  In each, a
thread sleeps 1 ms in a loop and records by how much it overslept: the
time it waited for a core and for the GIL.  The machine's share of that is
the same in both; the library's is the difference.

Phases: healthy (8 s), the outage (``--fault kill``: influxd killed with
SIGKILL and started again after ``--seconds``; ``503``: the soak's fault
proxy answering 503 with ``Retry-After: 1``), then 35 s to catch up::

    python bench/gil_wait.py --fault kill --seconds 60
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
for _path in (ROOT, BENCH):
    if _path not in sys.path:
        sys.path.insert(0, _path)

RATE = 300.0
HEALTHY = 8.0
RECOVERY = 35.0


def child(variant: str) -> None:
    """Record (or not) and tick; the parent drives the phases by signals
    (SIGUSR1: next phase); print the overshoot figures of each phase."""
    import sprockets_influxdb as influxdb

    influxdb.install()
    stop = threading.Event()
    ticks: list[tuple[float, float]] = []
    marks = [time.perf_counter()]
    signal.signal(signal.SIGUSR1, lambda *_: marks.append(time.perf_counter()))

    def ticker() -> None:
        while not stop.is_set():
            began = time.perf_counter()
            time.sleep(0.001)
            ticks.append((began, time.perf_counter() - began - 0.001))

    def producer() -> None:
        start = time.monotonic()
        index = 0
        while not stop.is_set():
            index += 1
            delay = start + index / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            measurement = influxdb.Measurement('db', 'request')
            measurement.set_tag('handler', f'h{index % 7}')
            measurement.set_tag('method', 'GET')
            measurement.set_tag('status_code', '200')
            measurement.set_field('duration', 0.0012 * (index % 13))
            measurement.set_field('item_id', index)
            influxdb.add_measurement(measurement)

    threads = [threading.Thread(target=ticker),
               threading.Thread(target=producer)]  # fmt: skip
    for thread in threads:
        thread.start()
    sys.stdout.write('ready\n')
    sys.stdout.flush()
    sys.stdin.readline()  # the parent says when it is over
    marks.append(time.perf_counter())
    stop.set()
    for thread in threads:
        thread.join()
    names = ['healthy', 'outage', 'catching up']
    for name, first, last in zip(names, marks, marks[1:]):
        waits = sorted(wait for at, wait in ticks if first <= at < last)
        count = len(waits)
        if not count:
            continue

        def at(share: float, waits: list[float] = waits) -> float:
            return 1e3 * waits[min(len(waits) - 1, int(share * len(waits)))]

        print(
            f'{variant:<8}{name:<13}{count:>7}{at(0.5):>8.3f}{at(0.99):>8.3f}'
            f'{at(0.999):>8.2f}{1e3 * waits[-1]:>8.1f}'
            f'{sum(1 for wait in waits if wait > 0.002):>8}'
        )
    stats = influxdb.stats()
    print(f'{variant:<8}written {stats.written}, retries {stats.retries}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--fault', choices=['kill', '503'], default='kill')
    parser.add_argument('--seconds', type=float, default=10.0)
    parser.add_argument('--child', help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments.child)
        return

    from _soak_proxy import FaultProxy

    from tests.helpers import clean_environment
    from tests.servers import InfluxServer

    server = InfluxServer()
    server.start()
    server.create_database('db')
    proxy = FaultProxy(server.port).start()
    children = {}
    for variant in ('with', 'without'):
        env = clean_environment(
            INFLUXDB_URL=proxy.url, INFLUXDB_INTERVAL='1000'
        )
        if variant == 'without':
            env['INFLUXDB_ENABLED'] = 'false'
        children[variant] = subprocess.Popen(
            [sys.executable, __file__, '--child', variant],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
    try:
        for process in children.values():
            assert process.stdout is not None
            process.stdout.readline()
        time.sleep(HEALTHY)
        for process in children.values():
            process.send_signal(signal.SIGUSR1)
        if arguments.fault == 'kill':
            pid = server.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            server.stop()
            time.sleep(arguments.seconds)
            server.start()
        else:
            proxy.set_fault(503, retry_after=1)
            time.sleep(arguments.seconds)
            proxy.set_fault(None)
        for process in children.values():
            process.send_signal(signal.SIGUSR1)
        time.sleep(RECOVERY)
        print(f'{"":<8}{"phase":<13}{"ticks":>7}{"p50":>8}{"p99":>8}'
              f'{"p99.9":>8}{"max":>8}{">2 ms":>8}'
              '   (ms a 1 ms sleep overslept)')  # fmt: skip
        outputs = {}
        for variant, process in children.items():
            outputs[variant], _ = process.communicate('\n', timeout=60)
        for variant in children:
            print(outputs[variant], end='')
        rows = server.count('db', 'request')
        print(f'points stored: {rows}')
    finally:
        for process in children.values():
            if process.poll() is None:
                process.kill()
        proxy.close()
        server.close()


if __name__ == '__main__':
    main()
