"""Settings: arguments, environment variables, defaults and clear errors."""

from __future__ import annotations

import base64
import logging
import socket
import typing

import pytest

import sprockets_influxdb
from sprockets_influxdb import Client, Measurement, Settings
from tests.helpers import run_script
from tests.servers import InfluxServer, free_port


def resolve(
    env: dict[str, str] | None = None, **arguments: object
) -> Settings:
    return Settings.resolve(environ=env or {}, **arguments)


def test_historical_defaults() -> None:
    settings = resolve()
    assert settings.enabled is True
    assert settings.url == 'http://localhost:8086/write'
    assert settings.username is None
    assert settings.password is None
    assert settings.submission_interval == 60000
    assert settings.trigger_size == 5000
    assert settings.max_batch_size == 10000
    assert settings.max_buffer_size == 25000
    assert settings.max_clients == 10
    assert settings.sample_probability == 1.0
    # Nanoseconds, not 2.x's milliseconds: the points of several processes
    # recorded in one millisecond would replace each other.
    assert settings.precision == 'n'
    assert settings.base_tags == {'hostname': socket.gethostname()}


def test_historical_environment_variables() -> None:
    settings = resolve(
        {
            'INFLUXDB_ENABLED': 'no',
            'INFLUXDB_SCHEME': 'https',
            'INFLUXDB_HOST': 'influx.example.com',
            'INFLUXDB_PORT': '8087',
            'INFLUXDB_USER': 'writer',
            'INFLUXDB_PASSWORD': 'secret',
            'INFLUXDB_INTERVAL': '250',
            'INFLUXDB_TRIGGER_SIZE': '10',
            'INFLUXDB_MAX_BATCH_SIZE': '20',
            'INFLUXDB_MAX_BUFFER_SIZE': '30',
            'INFLUXDB_SAMPLE_PROBABILITY': '0.25',
            'INFLUXDB_TAG_HOSTNAME': 'OFF',
            'ENVIRONMENT': 'staging',
        }
    )
    assert settings.enabled is False
    assert settings.url == 'https://influx.example.com:8087/write'
    assert (settings.username, settings.password) == ('writer', 'secret')
    assert settings.submission_interval == 250
    assert settings.trigger_size == 10
    assert settings.max_batch_size == 20
    assert settings.max_buffer_size == 30
    assert settings.sample_probability == 0.25
    assert settings.base_tags == {'environment': 'staging'}


def test_new_environment_variables() -> None:
    settings = resolve(
        {
            'INFLUXDB_URL': 'http://u:p%40ss@db:9999/prefix/',
            'INFLUXDB_MAX_CLIENTS': '3',
            'INFLUXDB_PRECISION': 'us',
            'INFLUXDB_REQUEST_TIMEOUT': '2.5',
            'INFLUXDB_GZIP': 'Yes',
            'INFLUXDB_RETENTION_POLICY': 'short',
        }
    )
    assert settings.url == 'http://db:9999/prefix/write'
    assert (settings.username, settings.password) == ('u', 'p@ss')
    assert settings.max_clients == 3
    assert settings.precision == 'u'
    assert settings.request_timeout == 2.5
    assert settings.gzip is True
    assert settings.retention_policy == 'short'


def test_arguments_win_over_the_environment() -> None:
    settings = resolve(
        {'INFLUXDB_INTERVAL': '250', 'INFLUXDB_URL': 'http://env:1'},
        submission_interval=5,
        url='http://arg:2/write',
    )
    assert settings.submission_interval == 5
    assert settings.url == 'http://arg:2/write'


def test_an_explicit_zero_is_a_value() -> None:
    settings = resolve(
        {'INFLUXDB_INTERVAL': '250', 'INFLUXDB_SAMPLE_PROBABILITY': '0.5'},
        submission_interval=0,
        sample_probability=0,
    )
    assert settings.submission_interval == 0
    assert settings.sample_probability == 0.0


@pytest.mark.parametrize(
    'text', ['true', 'TRUE', '1', 'yes', 'On', 'false', '0', 'NO', 'off']
)
def test_booleans(text: str) -> None:
    expected = text.lower() in ('true', '1', 'yes', 'on')
    assert resolve({'INFLUXDB_GZIP': text}).gzip is expected


@pytest.mark.parametrize(
    ('env', 'match'),
    [
        ({'INFLUXDB_ENABLED': 'maybe'}, 'INFLUXDB_ENABLED'),
        ({'INFLUXDB_TAG_HOSTNAME': 'sure'}, 'INFLUXDB_TAG_HOSTNAME'),
        ({'INFLUXDB_INTERVAL': 'soon'}, 'INFLUXDB_INTERVAL'),
        ({'INFLUXDB_INTERVAL': '-1'}, 'INFLUXDB_INTERVAL must be at least 0'),
        ({'INFLUXDB_TRIGGER_SIZE': '0'}, 'INFLUXDB_TRIGGER_SIZE'),
        ({'INFLUXDB_MAX_BATCH_SIZE': '1.5'}, 'INFLUXDB_MAX_BATCH_SIZE'),
        ({'INFLUXDB_MAX_BUFFER_SIZE': 'x'}, 'INFLUXDB_MAX_BUFFER_SIZE'),
        ({'INFLUXDB_SAMPLE_PROBABILITY': '2'}, 'INFLUXDB_SAMPLE_PROBABILITY'),
        ({'INFLUXDB_SAMPLE_PROBABILITY': 'nan'}, 'INFLUXDB_SAMPLE_PROB'),
        ({'INFLUXDB_PORT': 'http'}, 'INFLUXDB_PORT'),
        ({'INFLUXDB_SCHEME': 'ftp'}, 'INFLUXDB_SCHEME'),
        ({'INFLUXDB_URL': 'localhost:8086'}, 'INFLUXDB_URL'),
        ({'INFLUXDB_PRECISION': 'week'}, 'INFLUXDB_PRECISION'),
        ({'INFLUXDB_REQUEST_TIMEOUT': '0'}, 'INFLUXDB_REQUEST_TIMEOUT'),
    ],
)
def test_malformed_variables_name_the_variable(
    env: dict[str, str], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        resolve(env)


@pytest.mark.parametrize(
    ('arguments', 'error', 'match'),
    [
        (
            {'max_batch_size': 0},
            ValueError,
            'max_batch_size must be at least 1',
        ),
        ({'max_clients': -1}, ValueError, 'max_clients'),
        ({'max_buffer_size': '10'}, None, ''),
        ({'trigger_size': 'many'}, ValueError, 'trigger_size'),
        ({'trigger_size': [1]}, TypeError, 'trigger_size must be an integer'),
        ({'sample_probability': 1.5}, ValueError, 'sample_probability'),
        ({'sample_probability': True}, TypeError, 'sample_probability'),
        ({'url': 'ftp://x'}, ValueError, 'url'),
        ({'url': 'http://x/write?db=y'}, ValueError, 'query string'),
        ({'base_tags': {'bad': 'a\nb'}}, ValueError, 'base_tags: tag value'),
        ({'base_tags': ['x']}, TypeError, 'base_tags must be a mapping'),
        ({'colour': 'red'}, TypeError, 'unknown settings: colour'),
    ],
)
def test_bad_arguments_name_the_argument(
    arguments: dict[str, object], error: type[Exception] | None, match: str
) -> None:
    if error is None:
        resolve(**arguments)
        return
    with pytest.raises(error, match=match):
        resolve(**arguments)


def test_base_tags() -> None:
    settings = resolve(
        {'ENVIRONMENT': 'production'}, base_tags={'service': 'billing', 'n': 1}
    )
    assert settings.base_tags == {
        'hostname': socket.gethostname(),
        'environment': 'production',
        'service': 'billing',
        'n': '1',
    }


def test_credentials_never_appear_in_reprs() -> None:
    settings = resolve(url='http://user:hunter2@db:8086')
    client = Client(url='http://db:8086', auth_password='hunter2')
    assert 'hunter2' not in repr(settings)
    assert 'hunter2' not in repr(client)
    assert 'hunter2' not in repr(client.settings)
    assert 'hunter2' not in settings.url


def test_configure_validates_and_keeps_the_rest() -> None:
    client = Client(url='http://db:8086', base_tags={'service': 'x'})
    client.configure(max_batch_size=5)
    assert client.settings.max_batch_size == 5
    assert client.settings.url == 'http://db:8086/write'
    assert client.settings.base_tags['service'] == 'x'
    with pytest.raises(ValueError, match='max_batch_size'):
        client.configure(max_batch_size=0)
    assert client.settings.max_batch_size == 5


def test_the_public_names_are_exactly_all() -> None:
    exported = set(sprockets_influxdb.__all__)
    assert len(exported) == len(sprockets_influxdb.__all__)
    for name in exported:
        assert hasattr(sprockets_influxdb, name), name
    ours = {
        name
        for name, value in vars(sprockets_influxdb).items()
        if not name.startswith('_')
        and getattr(value, '__module__', '').startswith('sprockets_influxdb')
    }
    assert ours - exported == set()


def test_configure_refuses_what_applies_only_at_first_resolution() -> None:
    client = Client(url='http://db:8086')
    with pytest.raises(TypeError, match='tag_hostname applies when'):
        client.configure(tag_hostname=False)
    with pytest.raises(TypeError, match='environment applies when'):
        client.configure(environment='prod')


# A password no message, log line, repr or counter may ever show.
SECRET = 'S3cr3tPw-q7Zx'


@pytest.mark.parametrize(
    ('env', 'arguments', 'named'),
    [
        ({'INFLUXDB_URL': f'http://bob:{SECRET}@h:80:80'}, {}, 'INFLUXDB_URL'),
        ({'INFLUXDB_URL': f'http://bob:{SECRET}@'}, {}, 'INFLUXDB_URL'),
        ({'INFLUXDB_URL': f'ftp://bob:{SECRET}@h'}, {}, 'INFLUXDB_URL'),
        ({'INFLUXDB_URL': f'bob:{SECRET}@h:8086'}, {}, 'INFLUXDB_URL'),
        ({'INFLUXDB_URL': f'//bob:{SECRET}@h:8086'}, {}, 'INFLUXDB_URL'),
        ({'INFLUXDB_URL': f'http://bob:{SECRET}@[::1'}, {}, 'INFLUXDB_URL'),
        (
            {'INFLUXDB_URL': f'http://bob:{SECRET}@h/write?db=x'},
            {},
            'INFLUXDB_URL',
        ),
        # Unencoded '/', '?' and '#' in a password end the host early.
        ({'INFLUXDB_URL': f'http://bob:a/{SECRET}@h'}, {}, 'INFLUXDB_URL'),
        ({'INFLUXDB_URL': f'http://bob:12/{SECRET}@h'}, {}, 'INFLUXDB_URL'),
        ({'INFLUXDB_URL': f'http://bob:a?{SECRET}@h'}, {}, 'INFLUXDB_URL'),
        ({'INFLUXDB_URL': f'http://bob:a#{SECRET}@h'}, {}, 'INFLUXDB_URL'),
        # A password without a host: read as the port.
        ({'INFLUXDB_URL': f'http://bob:{SECRET}/'}, {}, 'INFLUXDB_URL'),
        ({'INFLUXDB_URL': f'http://bob:{SECRET}'}, {}, 'INFLUXDB_URL'),
        ({'INFLUXDB_URL': f'https://bob:{SECRET}/db'}, {}, 'INFLUXDB_URL'),
        ({'INFLUXDB_URL': f'http://bob:a/{SECRET}/'}, {}, 'INFLUXDB_URL'),
        ({'INFLUXDB_URL': f'http://bob:{SECRET}?x'}, {}, 'INFLUXDB_URL'),
        ({'INFLUXDB_URL': f'http://bob:{SECRET}#x'}, {}, 'INFLUXDB_URL'),
        ({'INFLUXDB_URL': f'ftp://bob:{SECRET}/'}, {}, 'INFLUXDB_URL'),
        ({'INFLUXDB_URL': f'http://:{SECRET}/'}, {}, 'INFLUXDB_URL'),
        ({'INFLUXDB_URL': f'bob:{SECRET}'}, {}, 'INFLUXDB_URL'),
        ({'INFLUXDB_URL': f'http://[::1]:{SECRET}/'}, {}, 'INFLUXDB_URL'),
        ({}, {'url': f'http://bob:{SECRET}/'}, 'url'),
        (
            {'INFLUXDB_HOST': f'bob:{SECRET}@h:1', 'INFLUXDB_PORT': '8086'},
            {},
            'INFLUXDB_HOST',
        ),
        ({}, {'url': f'http://bob:{SECRET}@h:80:80'}, 'url'),
        ({}, {'url': f'http://bob:{SECRET}@h'.encode()}, 'url'),
        ({}, {'password': SECRET.encode()}, 'password'),
        ({}, {'password': [SECRET]}, 'password'),
        ({}, {'username': SECRET.encode()}, 'username'),
    ],
)
def test_errors_never_show_a_password(
    env: dict[str, str], arguments: dict[str, object], named: str
) -> None:
    with pytest.raises((ValueError, TypeError)) as caught:
        resolve(env, **arguments)
    error = caught.value
    assert named in str(error)
    for text in (str(error), repr(error), repr(error.args)):
        assert SECRET not in text
    # Nor in a chained exception a traceback would print.
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


@pytest.mark.parametrize(
    ('url', 'message'),
    [
        (
            f'http://bob:{SECRET}/',
            "url 'http://bob:***' has an invalid port",
        ),
        (
            f'http://bob:{SECRET}@db:80:80/write',
            "url 'http://***@db:***' has an invalid port",
        ),
        (
            'http://db:99999/write',
            "url 'http://db:***' has an invalid port",
        ),
        (
            'http://db:8086/write?db=x',
            "url 'http://db:8086/write?db=x' must not have a query string "
            'or fragment',
        ),
    ],
)
def test_a_port_that_is_not_one_is_not_shown(url: str, message: str) -> None:
    with pytest.raises(ValueError, match='url') as caught:
        resolve({}, url=url)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    'change',
    [
        {'url': f'https://bob:{SECRET}@h:x'},
        {'url': f'https://bob:{SECRET}/'},
        {'url': f'https://bob:{SECRET}@h'.encode()},
        {'password': SECRET.encode()},
        {'username': 'bob', 'password': bytearray(SECRET.encode())},
    ],
)
def test_configure_errors_never_show_a_password(
    change: dict[str, object],
) -> None:
    client = Client(url=f'http://bob:{SECRET}@db:8086')
    with pytest.raises((ValueError, TypeError)) as caught:
        client.configure(**change)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    assert SECRET not in repr(client)
    assert SECRET not in repr(client.settings)
    assert SECRET not in repr(client.stats())


def hidden(text: str) -> bool:
    """Whether *text* shows the secret neither plainly nor in a header."""
    encoded = base64.b64encode(f'bob:{SECRET}'.encode()).decode()
    return SECRET not in text and encoded not in text


def secret_free(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    stats = client.stats()
    for text in (
        caplog.text,
        *(repr(record.args) for record in caplog.records),
        repr(stats),
        str(stats.last_error),
        repr(client),
        repr(client.settings),
    ):
        assert hidden(text), text


def measurement() -> Measurement:
    point = Measurement('db', 'm')
    point.set_field('f', 1)
    return point


@pytest.fixture
def debug_logs(
    caplog: pytest.LogCaptureFixture,
) -> typing.Iterator[pytest.LogCaptureFixture]:
    # Every logger, httpx's and httpcore's included, at every level.
    with caplog.at_level(logging.DEBUG):
        yield caplog


def test_no_password_in_logs_or_counters_when_writing(
    influxdb_factory: typing.Callable[..., InfluxServer],
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    server = influxdb_factory(auth_enabled=True)
    server.create_admin('bob', SECRET)
    server.create_database('db')
    # The test's own query created the user: it shows the password.
    debug_logs.clear()
    client = Client(f'http://bob:{SECRET}@{server.host}:{server.port}')
    client.add_measurement(measurement())
    assert client.flush(timeout=10).result(timeout=20) is True
    assert server.count('db', 'm') == 1
    assert client.shutdown(timeout=5).result(timeout=20) is True
    secret_free(client, debug_logs)


def test_no_password_in_logs_or_counters_when_refused(
    influxdb_factory: typing.Callable[..., InfluxServer],
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    server = influxdb_factory(auth_enabled=True)
    server.create_admin('admin', 'other')
    client = Client(
        f'http://bob:{SECRET}@{server.host}:{server.port}',
        backoff_base=0.01,
        backoff_max=0.05,
    )
    client.add_measurement(measurement())
    assert client.flush(timeout=0.5).result(timeout=20) is False
    assert client.stats().last_error is not None
    assert '401' in client.stats().last_error
    assert client.shutdown(timeout=0.2).result(timeout=20) is False
    assert 'not delivered' in debug_logs.text
    secret_free(client, debug_logs)


def test_no_password_in_logs_or_counters_when_unreachable(
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    client = Client(
        f'http://bob:{SECRET}@127.0.0.1:{free_port()}',
        backoff_base=0.01,
        backoff_max=0.05,
    )
    client.add_measurement(measurement())
    assert client.flush(timeout=0.5).result(timeout=20) is False
    assert 'ConnectError' in str(client.stats().last_error)
    client.shutdown(timeout=0.2).result(timeout=20)
    secret_free(client, debug_logs)


def test_no_password_in_what_install_logs(influxdb: InfluxServer) -> None:
    influxdb.create_database('db')
    url = f'http://bob:{SECRET}@{influxdb.host}:{influxdb.port}'
    result = run_script(
        """
        import logging
        import sprockets_influxdb as influxdb

        logging.basicConfig(level=logging.DEBUG)
        influxdb.install(tag_hostname=False)
        influxdb.install()
        client = influxdb.default_client()
        print(repr(client), repr(client.settings), influxdb.stats())
        influxdb.set_auth_credentials('bob', b'x')
        """,
        {'INFLUXDB_URL': url},
    )
    assert 'installed, writing to http://127.0.0.1' in result.stderr
    assert 'TypeError: password must be a str, not bytes' in result.stderr
    assert hidden(result.stdout + result.stderr)
