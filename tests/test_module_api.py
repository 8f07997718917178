"""The documented module-level API, each case in a fresh interpreter.

The module-level functions act on one process-wide default client, so each
case runs as a script in its own interpreter, the way applications use it.
"""

from __future__ import annotations

import json

from tests.helpers import run_script
from tests.servers import InfluxServer


def env_for(server: InfluxServer, **extra: str) -> dict[str, str]:
    return {
        'INFLUXDB_HOST': server.host,
        'INFLUXDB_PORT': str(server.port),
        **extra,
    }


EXAMPLE_A = """
import logging

from tornado import ioloop
import sprockets_influxdb as influxdb

logging.basicConfig(level=logging.INFO)

io_loop = ioloop.IOLoop.current()
influxdb.install(io_loop=io_loop)

measurement = influxdb.Measurement('example', 'measurement-name')
measurement.set_tag('foo', 'bar')
measurement.set_field('baz', 1.05)

influxdb.add_measurement(measurement)


def stop():
    influxdb.shutdown()
    io_loop.stop()


io_loop.add_callback(stop)
io_loop.start()
"""


def test_example_a_runs_unchanged_and_delivers(influxdb: InfluxServer) -> None:
    influxdb.create_database('example')
    result = run_script(EXAMPLE_A, env_for(influxdb))
    assert result.returncode == 0, result.stderr
    (row,) = influxdb.rows('example', 'measurement-name')
    assert (row['foo'], row['baz']) == ('bar', 1.05)
    assert row['hostname']


def test_install_is_optional_and_the_exit_drains_the_buffer(
    influxdb: InfluxServer,
) -> None:
    influxdb.create_database('db')
    result = run_script(
        """
        import sprockets_influxdb as influxdb
        for index in range(250):
            measurement = influxdb.Measurement('db', 'm')
            measurement.set_field('i', index)
            measurement.set_timestamp(1_700_000_000 + index)
            influxdb.add_measurement(measurement)
        # No install(), no flush(), no shutdown(): the exit hook delivers.
        """,
        env_for(influxdb, ENVIRONMENT='ci', INFLUXDB_INTERVAL='600000'),
    )
    assert result.returncode == 0, result.stderr
    rows = influxdb.rows('db', 'm')
    assert sorted(row['i'] for row in rows) == list(range(250))  # type: ignore[type-var]
    assert {row['environment'] for row in rows} == {'ci'}


def test_install_returns_true_once_then_false_with_a_warning(
    influxdb: InfluxServer,
) -> None:
    result = run_script(
        """
        import logging
        logging.basicConfig(level=logging.WARNING)
        import sprockets_influxdb as influxdb
        print(influxdb.install(), influxdb.install())
        """,
        env_for(influxdb),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['True', 'False']
    assert 'already installed' in result.stderr


def test_historical_positional_arguments_and_setters(
    influxdb: InfluxServer,
) -> None:
    influxdb.create_database('db')
    result = run_script(
        f"""
        import json
        import sprockets_influxdb as influxdb
        influxdb.install('http://127.0.0.1:9', 'user', 'pass',
                         base_tags={{'service': 'svc'}}, max_clients=2)
        influxdb.set_base_url({influxdb.url!r})
        influxdb.set_auth_credentials(None, None)
        influxdb.set_max_batch_size(10)
        influxdb.set_max_buffer_size(1000)
        influxdb.set_clients(3)
        influxdb.set_max_clients(4)
        influxdb.set_sample_probability(1.0)
        influxdb.set_timeout(50)
        influxdb.set_trigger_size(500)
        errors = []
        for call in (
            lambda: influxdb.set_max_batch_size(0),
            lambda: influxdb.set_sample_probability(1.5),
            lambda: influxdb.set_timeout('soon'),
            lambda: influxdb.set_clients(None),
            lambda: influxdb.set_base_url('localhost:8086'),
            lambda: influxdb.set_trigger_size(-5),
            lambda: influxdb.set_io_loop(object()),
        ):
            try:
                call()
            except (TypeError, ValueError) as error:
                errors.append(str(error))
        measurement = influxdb.Measurement('db', 'm')
        measurement.set_field('i', 1)
        influxdb.add_measurement(measurement)
        print(json.dumps({{
            'flushed': influxdb.flush().result(10),
            'errors': errors,
            'stats': influxdb.stats().written,
        }}))
        """,
        env_for(influxdb),
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output['flushed'] is True
    assert output['stats'] == 1
    assert len(output['errors']) == 7
    assert 'max_batch_size must be at least 1' in output['errors'][0]
    assert 'sample_probability' in output['errors'][1]
    assert 'submission_interval' in output['errors'][2]
    assert 'io_loop' in output['errors'][6]
    (row,) = influxdb.rows('db', 'm')
    assert row['service'] == 'svc'


def test_disabled_by_the_environment(influxdb: InfluxServer) -> None:
    influxdb.create_database('db')
    result = run_script(
        """
        import logging
        logging.basicConfig(level=logging.INFO)
        import sprockets_influxdb as influxdb
        print(influxdb.install())
        measurement = influxdb.Measurement('db', 'm')
        measurement.set_field('i', 1)
        influxdb.add_measurement(measurement)
        print(influxdb.flush().result(1), influxdb.shutdown().result(1))
        """,
        env_for(influxdb, INFLUXDB_ENABLED='false'),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['False', 'True', 'True']
    assert 'disabled' in result.stderr
    assert influxdb.count('db', 'm') == 0


def test_a_malformed_variable_is_one_clear_error(
    influxdb: InfluxServer,
) -> None:
    result = run_script(
        """
        import sprockets_influxdb as influxdb
        influxdb.install()
        """,
        env_for(influxdb, INFLUXDB_TRIGGER_SIZE='lots'),
    )
    assert result.returncode == 1
    assert "ValueError: INFLUXDB_TRIGGER_SIZE='lots' is not an integer" in (
        result.stderr
    )


def test_flush_and_shutdown_futures_in_tornado_coroutines(
    influxdb: InfluxServer,
) -> None:
    influxdb.create_database('db')
    result = run_script(
        """
        import asyncio
        from tornado import gen, ioloop
        import sprockets_influxdb as influxdb

        def point(index):
            measurement = influxdb.Measurement('db', 'm')
            measurement.set_field('i', index)
            measurement.set_timestamp(1_700_000_000 + index)
            return measurement

        @gen.coroutine
        def legacy():
            influxdb.add_measurement(point(1))
            result = yield influxdb.flush()
            return result

        async def native():
            influxdb.add_measurement(point(2))
            flushed = await influxdb.flush()
            legacy_result = await legacy()
            influxdb.add_measurement(point(3))
            stopped = await influxdb.shutdown()
            return flushed, legacy_result, stopped

        io_loop = ioloop.IOLoop.current()
        influxdb.install(io_loop=io_loop)
        print(io_loop.run_sync(native))
        """,
        env_for(influxdb),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '(True, True, True)'
    assert sorted(row['i'] for row in influxdb.rows('db', 'm')) == [1, 2, 3]  # type: ignore[type-var]


def test_a_forked_child_delivers_its_own_measurements(
    influxdb: InfluxServer,
) -> None:
    influxdb.create_database('db')
    result = run_script(
        """
        import os
        import sprockets_influxdb as influxdb

        def point(who, index):
            measurement = influxdb.Measurement('db', 'm')
            measurement.set_tag('who', who)
            measurement.set_field('i', index)
            measurement.set_timestamp(1_700_000_000 + index)
            return measurement

        influxdb.install(submission_interval=600000)
        influxdb.add_measurement(point('parent', 0))  # the writer starts
        assert influxdb.flush().result(10)
        influxdb.add_measurement(point('parent', 1))  # pending at the fork
        pid = os.fork()
        if pid == 0:
            influxdb.add_measurement(point('child', 2))
            ok = influxdb.flush().result(10)
            stats = influxdb.stats()
            os._exit(0 if ok and stats.added == stats.written == 1 else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert influxdb.shutdown().result(10)
        print('ok')
        """,
        env_for(influxdb),
    )
    assert result.returncode == 0, result.stderr
    rows = influxdb.rows('db', 'm')
    assert sorted((row['who'], row['i']) for row in rows) == [  # type: ignore[type-var]
        ('child', 2),
        ('parent', 0),
        ('parent', 1),
    ]


def test_shutdown_then_stopping_the_loop_still_delivers_a_burst(
    influxdb: InfluxServer,
) -> None:
    influxdb.create_database('db')
    result = run_script(
        """
        from tornado import ioloop
        import sprockets_influxdb as influxdb

        io_loop = ioloop.IOLoop.current()
        influxdb.install(io_loop=io_loop, max_batch_size=1000)
        for index in range(20000):
            measurement = influxdb.Measurement('db', 'm')
            measurement.set_field('i', index)
            measurement.set_timestamp(1_700_000_000 + index / 1000)
            influxdb.add_measurement(measurement)

        def stop():
            influxdb.shutdown()
            io_loop.stop()

        io_loop.add_callback(stop)
        io_loop.start()
        """,
        env_for(influxdb),
    )
    assert result.returncode == 0, result.stderr
    assert influxdb.count('db', 'm') == 20000


def test_configuring_never_starts_the_writer_thread(
    influxdb: InfluxServer,
) -> None:
    # A gunicorn --preload master installs, configures, then forks: it must
    # not have a writer thread of its own by then.
    result = run_script(
        """
        import threading
        import sprockets_influxdb as influxdb
        influxdb.install(submission_interval=10)
        influxdb.set_timeout(20)
        influxdb.set_max_batch_size(100)
        print(sorted(thread.name for thread in threading.enumerate()))
        """,
        env_for(influxdb),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['MainThread']"


def test_delivering_over_http_imports_no_framework_nor_httpx(
    influxdb: InfluxServer,
) -> None:
    """The core imports what it delivers with (anyio, h11), not a web
    framework and not httpx, whose imports (its command line's click and
    pygments among them) only a default HTTPS context needs."""
    influxdb.create_database('db')
    result = run_script(
        """
        import sys
        import sprockets_influxdb as influxdb
        measurement = influxdb.Measurement('db', 'm')
        measurement.set_field('value', 1)
        influxdb.add_measurement(measurement)
        assert influxdb.flush().result(10)
        loaded = {name.partition('.')[0] for name in sys.modules}
        print(sorted(loaded & {
            'httpx', 'click', 'pygments', 'rich', 'tornado', 'starlette',
            'fastapi', 'flask', 'werkzeug', 'uvicorn', 'gunicorn',
        }))
        """,
        env_for(influxdb),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'
    assert influxdb.count('db', 'm') == 1


def test_measurements_of_threads_still_running_at_exit_are_delivered(
    influxdb: InfluxServer,
) -> None:
    influxdb.create_database('db')
    result = run_script(
        """
        import threading, time
        from concurrent.futures import ThreadPoolExecutor
        import sprockets_influxdb as influxdb

        def record(index):
            time.sleep(0.01)
            measurement = influxdb.Measurement('db', 'm')
            measurement.set_field('i', index)
            measurement.set_timestamp(1_700_000_000 + index)
            influxdb.add_measurement(measurement)

        def worker():
            for index in range(20):
                record(index)

        influxdb.install(submission_interval=600000)
        threading.Thread(target=worker).start()
        pool = ThreadPoolExecutor(2)
        for index in range(20, 40):
            pool.submit(record, index)
        # The main thread ends here, with both still adding.
        """,
        env_for(influxdb),
    )
    assert result.returncode == 0, result.stderr
    assert 'after shutdown' not in result.stderr
    assert sorted(row['i'] for row in influxdb.rows('db', 'm')) == list(  # type: ignore[type-var]
        range(40)
    )


def test_install_arguments_win_over_malformed_variables(
    influxdb: InfluxServer,
) -> None:
    influxdb.create_database('db')
    result = run_script(
        f"""
        import sprockets_influxdb as influxdb
        print(influxdb.install({influxdb.url!r}, max_buffer_size=100))
        measurement = influxdb.Measurement('db', 'm')
        measurement.set_field('i', 1)
        influxdb.add_measurement(measurement)
        print(influxdb.flush().result(10))
        """,
        {'INFLUXDB_PORT': 'not-a-port', 'INFLUXDB_MAX_BUFFER_SIZE': 'x'},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['True', 'True']
    assert influxdb.count('db', 'm') == 1
