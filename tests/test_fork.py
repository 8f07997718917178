"""A process that forks right after its first measurement.

The writer thread starts with the first measurement.  A gunicorn
``--preload`` master that records one at start-up forks its workers a few
milliseconds later, while that thread may be importing what its first
request needs: the child then had a half-imported module and no writer,
for good.  Everything the writer imports is now imported with the library
(``sprockets_influxdb._imports``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap

from tests.helpers import clean_environment, run_script
from tests.servers import InfluxServer

TRIALS = 200
AT_ONCE = 4

TRIAL = """
    import os
    import sys
    import time
    import sprockets_influxdb as influxdb

    trial, delay = sys.argv[1], float(sys.argv[2])

    def record(name):
        measurement = influxdb.Measurement('forks', name)
        measurement.set_tag('trial', trial)
        measurement.set_field('pid', os.getpid())
        influxdb.add_measurement(measurement)

    record('parent')  # starts the writer thread
    time.sleep(delay)
    pid = os.fork()
    if pid == 0:
        record('child')
        os._exit(0 if influxdb.flush(timeout=30).result() else 3)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    sys.exit(code or (0 if influxdb.shutdown().result() else 4))
"""


def test_children_forked_0_to_10_ms_after_the_first_measurement_deliver(
    influxdb: InfluxServer,
) -> None:
    influxdb.create_database('forks')
    environ = clean_environment(INFLUXDB_URL=influxdb.url)
    source = textwrap.dedent(TRIAL)
    failures: list[tuple[int, str]] = []
    running: list[tuple[int, subprocess.Popen[str]]] = []

    def reap(process: subprocess.Popen[str], trial: int) -> None:
        _, errors = process.communicate(timeout=120)
        if process.returncode != 0:
            failures.append((trial, errors[-2000:]))

    for trial in range(TRIALS):
        delay = (trial % 11) / 1000  # 0 to 10 ms
        process = subprocess.Popen(
            [sys.executable, '-c', source, str(trial), str(delay)],
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        running.append((trial, process))
        if len(running) >= AT_ONCE:
            done, process = running.pop(0)
            reap(process, done)
    for trial, process in running:
        reap(process, trial)
    assert failures == []
    payload = influxdb.query(
        'SELECT COUNT("pid") FROM child GROUP BY "trial"', 'forks'
    )
    series = payload['results'][0].get('series', [])
    counts = {row['tags']['trial']: row['values'][0][1] for row in series}
    assert counts == {str(trial): 1 for trial in range(TRIALS)}


TRACE = """
    import importlib.abc
    import socket
    import sys
    import threading

    imported = []

    class Tracer(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            thread = threading.current_thread()
            if thread is not threading.main_thread():
                imported.append((thread.name, name))
            return None

    sys.meta_path.insert(0, Tracer())

    import sprockets_influxdb as influxdb

    url = sys.argv[1]
    client = influxdb.Client(url, tag_hostname=False)

    def record(database, value=1):
        measurement = influxdb.Measurement(database, 'm')
        measurement.set_field('v', value)
        client.add_measurement(measurement)

    def through(url, database="db", value=1, timeout=1, **options):
        client.configure(url=url, request_timeout=200, **options)
        record(database, value)
        client.flush(timeout, wait_for_server=False).result()

    # A listener that never answers: the request times out.
    silent = socket.socket()
    silent.bind(('127.0.0.1', 0))
    silent.listen()
    silent_url = 'http://127.0.0.1:%d/write' % silent.getsockname()[1]

    through(url)                                  # written
    through(url, value='text')                    # 400, a rejected line
    through(url, database='missing')              # 404
    through('http://127.0.0.1:1/write')           # connection refused
    through('https://127.0.0.1:1/write')          # https
    through(silent_url)                           # timed out
    through(url.replace('127.0.0.1', 'localhost'))  # a host name
    through(url, gzip=True)                       # compressed
    through(url, api='v2', token='t', org='o')    # the v2 API (404 here)
    through(url, api='v3', token='t')             # the v3 API (404 here)
    client.configure(url=url, api='v1', token=None)
    client.shutdown(5).result()
    print(sorted(set(imported)))
"""


def test_the_writer_thread_imports_nothing(influxdb: InfluxServer) -> None:
    influxdb.create_database('db')
    result = run_script(TRACE + '\n', timeout=120, args=[influxdb.url])
    assert result.returncode == 0, result.stderr
    assert ast.literal_eval(result.stdout.strip()) == []
