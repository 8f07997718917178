"""A stop signal delivers what is buffered, though the host's handler hangs.

Read back from a real InfluxDB: a process whose own ``SIGTERM`` handler
never returns (as a gunicorn gthread worker's can) must not keep its
measurements until it is killed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.helpers import clean_environment, run_script, wait_for
from tests.servers import InfluxServer

STUCK = """
import signal
import sys
import threading

import sprockets_influxdb as influxdb

stuck = threading.Event()


def stop(signum, frame):
    print('the host handler runs', flush=True)
    stuck.wait()  # a deadlock, as gunicorn's gthread worker's


signal.signal(signal.SIGTERM, stop)
influxdb.install(url=sys.argv[1])  # the default interval: 60 s


def record(index):
    measurement = influxdb.Measurement('stuck', 'events')
    measurement.set_field('index', index)
    influxdb.add_measurement(measurement)


for index in range(5):
    record(index)


def late():
    sys.stdin.readline()  # after the signal: recorded by another thread
    record(5)


threading.Thread(target=late, daemon=True).start()
print('ready', flush=True)
stuck.wait()
"""


def test_a_stop_signal_delivers_though_the_hosts_handler_hangs(
    influxdb: InfluxServer,
) -> None:
    influxdb.create_database('stuck')
    process = subprocess.Popen(
        [sys.executable, '-c', textwrap.dedent(STUCK), influxdb.url],
        env=clean_environment(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdin is not None
        assert process.stdout.readline() == 'ready\n'
        assert influxdb.count('stuck', 'events') == 0
        process.terminate()
        assert process.stdout.readline() == 'the host handler runs\n'
        # Well before the 60 s interval, and the process never ends.
        wait_for(
            lambda: influxdb.count('stuck', 'events') == 5,
            timeout=10,
            message='the buffered measurements to be delivered',
        )
        process.stdin.write('\n')
        process.stdin.flush()
        wait_for(
            lambda: influxdb.count('stuck', 'events') == 6,
            timeout=10,
            message='the one recorded after the signal to be delivered',
        )
        assert process.poll() is None
    finally:
        process.kill()
        process.communicate()
    indexes = sorted(
        int(row['index'])  # type: ignore[call-overload]
        for row in influxdb.rows('stuck', 'events')
    )
    assert indexes == [0, 1, 2, 3, 4, 5]


RUNNERS = """
import asyncio
import signal
import sys

import trio

import sprockets_influxdb as influxdb


def record():
    measurement = influxdb.Measurement('db', 'm')
    measurement.set_field('n', 1)
    influxdb.add_measurement(measurement)  # the writer starts: watch()


async def first():
    influxdb.install(url=sys.argv[1])  # a client made in the runner
    record()


async def trio_first():
    influxdb.Client(url=sys.argv[1])
    record()


for run in (lambda: asyncio.run(first()), lambda: trio.run(trio_first)):
    run()
    # Each runner put Python's default handler back: it was not wrapped.
    print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)
print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)


async def main():
    # asyncio.run installs its own SIGINT handler only over Python's
    # default one: Ctrl-C cancels the main task, as without the library.
    record()
    signal.raise_signal(signal.SIGINT)
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        print('cancelled')
        raise


try:
    asyncio.run(main())
except KeyboardInterrupt:
    print('interrupted')
"""


def test_event_loop_runners_keep_their_ctrl_c(influxdb: InfluxServer) -> None:
    result = run_script(RUNNERS, args=[influxdb.url])
    assert result.stdout.split() == [
        'True',
        'True',
        'True',
        'cancelled',
        'interrupted',
    ], result


HANDLERS = """
import signal
import sys
import threading

import sprockets_influxdb as influxdb
from sprockets_influxdb import stop_signals
from sprockets_influxdb.measurement import _compiled

ran = []


def host(signum, frame):
    ran.append(signum)


signal.signal(signal.SIGTERM, host)
signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn's workers do
signal.signal(signal.SIGQUIT, host)
signal.signal(signal.SIGINT, host)

# A thread other than the main one cannot set handlers: nothing happens.
thread = threading.Thread(target=stop_signals.watch)
thread.start()
thread.join()
print('other thread', signal.getsignal(signal.SIGTERM) is host)

client = influxdb.Client(url=sys.argv[1])  # the main thread: wrapped
stop_signals.watch()  # twice: one wrapper
for name in ('SIGTERM', 'SIGQUIT', 'SIGINT'):
    handler = signal.getsignal(getattr(signal, name))
    wrapped = getattr(handler, 'handler', None)
    print(name, type(handler).__name__, wrapped is host)
print('restarts', _compiled.signal_restarts(signal.SIGTERM))
print('quit restarts', _compiled.signal_restarts(signal.SIGQUIT))


class Broken:
    def hurry(self):
        raise RuntimeError('broken')


broken = Broken()
stop_signals.tell(broken)  # an error there never keeps the host's away
signal.raise_signal(signal.SIGTERM)
print('host ran', ran == [signal.SIGTERM])
"""


def test_the_hosts_handlers_are_wrapped_as_they_were(
    influxdb: InfluxServer,
) -> None:
    result = run_script(HANDLERS, args=[influxdb.url])
    assert result.stdout.splitlines() == [
        'other thread True',
        'SIGTERM _Wrapped True',
        'SIGQUIT _Wrapped True',
        'SIGINT function False',
        'restarts True',
        'quit restarts False',
        'host ran True',
    ], result
