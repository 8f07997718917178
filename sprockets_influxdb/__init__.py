"""Record measurements and write them to InfluxDB in batches.

The module-level functions act on one default :class:`Client`, configured by
:func:`install` or, when :func:`install` is never called, from the
environment on first use.  They keep the documented API of the historical
``sprockets_influxdb`` package, so code written for it keeps working:

.. code-block:: python

    import sprockets_influxdb as influxdb

    influxdb.install(base_tags={'service': 'billing'})
    measurement = influxdb.Measurement('example', 'measurement-name')
    measurement.set_tag('foo', 'bar')
    measurement.set_field('baz', 1.05)
    influxdb.add_measurement(measurement)
"""

from __future__ import annotations

import logging
import threading
from typing import Any, TypeVar

from sprockets_influxdb import line_protocol
from sprockets_influxdb._version import __version__, version_info
from sprockets_influxdb.client import Client, FlushFuture, Stats
from sprockets_influxdb.config import Settings
from sprockets_influxdb.measurement import Measurement, _compiled
from sprockets_influxdb.measurement import (
    set_default_tags as _set_default_tags,
)
from sprockets_influxdb.writer import USER_AGENT

__all__ = [
    'REQUEST_DATABASE',
    'USER_AGENT',
    'Client',
    'FlushFuture',
    'Measurement',
    'Settings',
    'Stats',
    '__version__',
    'add_measurement',
    'default_client',
    'flush',
    'install',
    'set_auth_credentials',
    'set_base_url',
    'set_clients',
    'set_io_loop',
    'set_max_batch_size',
    'set_max_buffer_size',
    'set_max_clients',
    'set_sample_probability',
    'set_timeout',
    'set_trigger_size',
    'shutdown',
    'stats',
    'version_info',
]

LOGGER = logging.getLogger('sprockets_influxdb')

_T = TypeVar('_T')

#: The Tornado application setting that names the database request
#: measurements are written to.
REQUEST_DATABASE = 'sprockets_influxdb.database'


def __getattr__(name: str) -> Any:
    # The Tornado mixin is imported on first use, so that importing this
    # package never imports Tornado.
    if name == 'InfluxDBMixin':
        from sprockets_influxdb.tornado import InfluxDBMixin

        return InfluxDBMixin
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


class _DefaultClient(Client):
    # Measurements start with a copy of the default client's base tags, so
    # they are not added again (a tag a handler removed stays removed).
    _merge_base_tags = False


_lock = threading.Lock()
_default: Client | None = None
_installed = False


def _client() -> Client:
    """The default client, configured from the environment on first use."""
    global _default
    client = _default
    if client is None:
        with _lock:
            if _default is None:
                _default = _DefaultClient()
                _set_default_tags(_default.settings.base_tags)
            client = _default
    return client


def _given(value: _T, name: str) -> _T:
    if value is None:
        raise TypeError(f'{name} must not be None')
    return value


def install(
    url: str | None = None,
    auth_username: str | None = None,
    auth_password: str | None = None,
    submission_interval: int | None = None,
    max_batch_size: int | None = None,
    max_clients: int | None = 10,
    base_tags: dict[str, object] | None = None,
    max_buffer_size: int | None = None,
    trigger_size: int | None = None,
    sample_probability: float | None = None,
    *,
    io_loop: Any = None,
    **settings: Any,
) -> bool:
    """Configure the default client.

    Optional: without it, the first use configures the client from the
    environment.

    Every argument left as ``None`` is read from its environment variable,
    else its default (see :doc:`configuration`); an explicit ``0`` is a
    value.  ``max_clients`` defaults to 10 as it historically did; pass
    ``None`` to read ``INFLUXDB_MAX_CLIENTS``.

    :param url: the server (``http://host:8086``) or its write endpoint
        (``http://host:8086/write``)
    :param auth_username: user name for HTTP basic authentication
    :param auth_password: password for HTTP basic authentication
    :param submission_interval: milliseconds after the oldest pending
        measurement was added at which a batch is written
    :param max_batch_size: lines per request at most
    :param max_clients: requests in flight at most
    :param base_tags: tags added to every measurement
    :param max_buffer_size: measurements held at most
    :param trigger_size: pending measurements that trigger a write
    :param sample_probability: probability (0.0 to 1.0) to keep each
        measurement
    :param io_loop: a Tornado IOLoop: :func:`flush` and :func:`shutdown`
        then return futures of that loop
    :param settings: further keyword-only settings of :class:`Settings`
    :returns: ``True`` the first time; ``False``, with a warning, when
        already installed, and ``False`` when ``INFLUXDB_ENABLED`` disables
        the library
    :raises ValueError: for an invalid setting, naming it
    :raises TypeError: for an unknown setting or one of the wrong type
    """
    global _installed
    resolved = Settings.resolve(
        url=url,
        username=auth_username,
        password=auth_password,
        submission_interval=submission_interval,
        max_batch_size=max_batch_size,
        max_clients=max_clients,
        base_tags=base_tags,
        max_buffer_size=max_buffer_size,
        trigger_size=trigger_size,
        sample_probability=sample_probability,
        **settings,
    )
    global _default
    with _lock:
        if _installed:
            LOGGER.warning('sprockets_influxdb is already installed')
            return False
        if _default is None:
            # Built from the settings just resolved, so that an argument
            # wins over a malformed variable it overrides.
            _default = _DefaultClient._from_settings(resolved)
        _installed = True
    client = _default
    # vars(), not dataclasses.asdict(): an SSL context cannot be copied.
    client.configure(**vars(resolved))
    _set_default_tags(resolved.base_tags)
    if io_loop is not None:
        client.set_io_loop(io_loop)
    if not resolved.enabled:
        LOGGER.info(
            'sprockets_influxdb is disabled by INFLUXDB_ENABLED: '
            'measurements are discarded'
        )
        return False
    LOGGER.info(
        'sprockets_influxdb v%s installed, writing to %s (%s write API): '
        '%d measurements or %.2f seconds trigger a write; %s encoder',
        __version__,
        resolved.url,
        resolved.api,
        resolved.trigger_size,
        resolved.submission_interval / 1000,
        line_protocol.ENCODER,
    )
    return True


def default_client() -> Client:
    """Return the client the module-level functions act on.

    It is configured by :func:`install`, or from the environment on first
    use.

    :returns: the default :class:`Client`
    """
    return _default or _client()


def add_measurement(measurement: Measurement) -> None:
    """Queue a measurement for writing by the default client.

    Never blocks on the network and never raises for network trouble; safe
    from any thread.  A copy is queued, so later changes to the measurement
    are not sent.  After :func:`shutdown`, the measurement is dropped and
    counted, with a rate-limited warning.

    :param measurement: the measurement to write
    :raises ValueError: when the measurement has no fields
    """
    client = _default or _client()
    if _fast_add is None or not _fast_add(client, measurement):
        client.add_measurement(measurement)


# The compiled form of Client.add_measurement's common case (a plain, open
# client), or None.
_fast_add = None if _compiled is None else _compiled.fast_add
# The library's own add_measurement functions, taken before a test can mock
# them: request records go through a test's mock of either (on the client,
# its class or this module), not around it (see RequestRecorder).
_own_adds = (Client.add_measurement, add_measurement)
if _compiled is not None:
    _compiled.configure_add(*_own_adds)


def flush(timeout: float | None = None) -> Any:
    """Write everything added so far, now, cutting short any backoff wait.

    :param timeout: seconds to wait at most (default: the ``flush_timeout``
        setting, 30 seconds)
    :returns: a :class:`FlushFuture` (a future of the IOLoop given to
        :func:`install` or :func:`set_io_loop`, if any) resolving ``True``
        once everything added before the call was delivered or definitively
        dropped, ``False`` when the timeout passed first
    """
    return _client().flush(timeout)


def shutdown(timeout: float | None = None) -> Any:
    """Stop intake, deliver what is pending within a deadline, stop writing.

    The data is delivered even if the program stops its event loop right
    after calling this.  A second call is harmless.

    :param timeout: seconds to keep trying (default: the
        ``shutdown_timeout`` setting, 5 seconds)
    :returns: a future as :func:`flush` does, ``True`` when nothing was lost
    """
    return _client().shutdown(timeout)


def stats() -> Stats:
    """Return the counters of the default client.

    :returns: a :class:`Stats` snapshot
    """
    return _client().stats()


def set_auth_credentials(username: str | None, password: str | None) -> None:
    """Set the credentials used for HTTP basic authentication.

    :param username: the user name
    :param password: the password
    :raises TypeError: when either is not a string
    """
    _client().configure(username=username, password=password)


def set_base_url(url: str) -> None:
    """Set the server to write to.

    :param url: the server (``http://host:8086``) or its write endpoint
    :raises ValueError: when it is not an http or https URL
    """
    _client().configure(url=_given(url, 'url'))


def set_io_loop(io_loop: Any) -> None:
    """Make :func:`flush` and :func:`shutdown` return futures of an IOLoop.

    :param io_loop: a :class:`tornado.ioloop.IOLoop`
    :raises TypeError: when it is not an IOLoop
    """
    _client().set_io_loop(io_loop)


def set_max_batch_size(limit: int) -> None:
    """Set the most lines sent in one request.

    :param limit: at least 1
    :raises ValueError: when out of range
    :raises TypeError: when not an integer
    """
    _client().configure(max_batch_size=_given(limit, 'max_batch_size'))


def set_max_buffer_size(limit: int) -> None:
    """Set the most measurements held; the oldest are dropped beyond it.

    :param limit: at least 1
    :raises ValueError: when out of range
    :raises TypeError: when not an integer
    """
    _client().configure(max_buffer_size=_given(limit, 'max_buffer_size'))


def set_clients(limit: int) -> None:
    """Set the most requests in flight at once.

    :param limit: at least 1
    :raises ValueError: when out of range
    :raises TypeError: when not an integer
    """
    _client().configure(max_clients=_given(limit, 'max_clients'))


def set_max_clients(limit: int) -> None:
    """Historical name of :func:`set_clients`.

    :param limit: at least 1
    :raises ValueError: when out of range
    :raises TypeError: when not an integer
    """
    set_clients(limit)


def set_sample_probability(probability: float) -> None:
    """Set the probability to keep each measurement.

    :param probability: from 0.0 (keep none) to 1.0 (keep all)
    :raises ValueError: when out of range
    :raises TypeError: when not a number
    """
    _client().configure(
        sample_probability=_given(probability, 'sample_probability')
    )


def set_timeout(milliseconds: int) -> None:
    """Set the submission interval, in milliseconds.

    A batch is written at the latest this long after the oldest pending
    measurement was added.

    :param milliseconds: a delay, at least 0
    :raises ValueError: when negative
    :raises TypeError: when not an integer
    """
    _client().configure(
        submission_interval=_given(milliseconds, 'submission_interval')
    )


def set_trigger_size(limit: int) -> None:
    """Set how many pending measurements trigger a write.

    :param limit: at least 1
    :raises ValueError: when out of range
    :raises TypeError: when not an integer
    """
    _client().configure(trigger_size=_given(limit, 'trigger_size'))
