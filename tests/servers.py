"""Throwaway servers for the test suite.

:class:`InfluxServer` runs a real ``influxd`` process in a temporary
directory, :class:`VictoriaServer` a real single-node ``victoria-metrics``;
:class:`FaultServer` is a scripted HTTP/1.1 server that can
stand in front of it, record every request and inject faults.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import gzip
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types
import typing
import urllib.parse

import httpx

__all__ = [
    'FORWARD',
    'FaultServer',
    'InfluxQueryError',
    'InfluxServer',
    'InfluxServerError',
    'RecordedRequest',
    'Response',
    'Series',
    'VictoriaQueryError',
    'VictoriaServer',
    'VictoriaServerError',
    'free_port',
    'quote_ident',
]

LOCALHOST = '127.0.0.1'
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.01


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def listeners(port: int) -> set[str]:
    """The inodes of the sockets listening on TCP *port*, on 127.0.0.1 or
    any address (Linux's /proc)."""
    found = set()
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(table) as lines:
                rows = lines.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # local address (hex ip:port), state (0A: LISTEN), inode
            if fields[3] == '0A' and int(fields[1].rsplit(':', 1)[1], 16) == (
                port
            ):
                found.add(fields[9])
    return found


def listens(pid: int, port: int) -> bool:
    """Whether process *pid*, or one of its descendants, listens on *port*.

    A port from :func:`free_port` is free only when it is asked for:
    another process (a server a parallel test started) can take it before
    the one it was meant for, whose readiness check would then reach the
    other one.
    """
    inodes = listeners(port)
    if not inodes:
        return False
    if inodes & socket_inodes(pid):  # the usual case: the process itself
        return True
    family = {pid}
    parents: dict[int, int] = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as stat:
                    # pid (comm) state ppid ...: comm may hold spaces.
                    parents[int(entry)] = int(
                        stat.read().rsplit(')', 1)[1].split()[1]
                    )
            except (OSError, IndexError, ValueError):
                continue
    grown = True
    while grown:
        grown = False
        for child, parent in parents.items():
            if parent in family and child not in family:
                family.add(child)
                grown = True
    return any(inodes & socket_inodes(member) for member in family - {pid})


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process *pid* holds open."""
    inodes = set()
    try:
        descriptors = os.listdir(f'/proc/{pid}/fd')
    except OSError:
        return inodes
    for descriptor in descriptors:
        try:
            target = os.readlink(f'/proc/{pid}/fd/{descriptor}')
        except OSError:
            continue
        if target.startswith('socket:['):
            inodes.add(target[8:-1])
    return inodes


def quote_ident(name: str) -> str:
    """Quote an InfluxQL identifier (measurement, database, user...)."""
    escaped = (
        name.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')
    )
    return f'"{escaped}"'


def quote_string(value: str) -> str:
    """Quote an InfluxQL string literal (e.g. a password)."""
    escaped = (
        value.replace('\\', '\\\\').replace("'", "\\'").replace('\n', '\\n')
    )
    return f"'{escaped}'"


# --------------------------------------------------------------------------
# InfluxServer
# --------------------------------------------------------------------------


class InfluxServerError(RuntimeError):
    """The influxd process could not be started or stopped."""


class InfluxQueryError(RuntimeError):
    """An InfluxQL query failed (HTTP error or ``error`` in the result)."""


class InfluxServer:
    """A throwaway ``influxd`` process with its own data directory.

    Nothing is started until :meth:`start` (or ``with``) is called.
    """

    def __init__(
        self,
        *,
        auth_enabled: bool = False,
        max_body_size: int | None = None,
        port: int | None = None,
        executable: str | None = None,
        https_certificate: str | None = None,
        https_private_key: str | None = None,
        https_ca: str | None = None,
    ) -> None:
        self.auth_enabled = auth_enabled
        self.max_body_size = max_body_size
        # HTTPS: influxd's certificate and key; the helpers of this class
        # trust https_ca (the CA that signed it).
        self.https_certificate = https_certificate
        self.https_private_key = https_private_key
        self._verify: ssl.SSLContext | bool = True
        if https_ca is not None:
            self._verify = ssl.create_default_context(cafile=https_ca)
        self.executable = executable or shutil.which('influxd') or 'influxd'
        self._fixed_port = port is not None
        self._port = port if port is not None else free_port()
        self._rpc_port = self._pick_rpc_port()
        self._dir: str | None = tempfile.mkdtemp(prefix='influxd-')
        self.config_path = os.path.join(self._dir, 'influxd.conf')
        self.log_path = os.path.join(self._dir, 'influxd.log')
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: typing.BinaryIO | None = None
        self._frozen = False
        self._started_once = False
        self._auth: tuple[str, str] | None = None
        self._client = httpx.Client(timeout=10.0, verify=self._verify)
        self._write_config()

    # -- properties ---------------------------------------------------------

    @property
    def host(self) -> str:
        """The HTTP host (always 127.0.0.1)."""
        return LOCALHOST

    @property
    def port(self) -> int:
        """The HTTP port."""
        return self._port

    @property
    def rpc_port(self) -> int:
        """The RPC (backup/restore) port."""
        return self._rpc_port

    @property
    def url(self) -> str:
        """Base URL of the HTTP API, e.g. ``http://127.0.0.1:8086``."""
        scheme = 'https' if self.https_certificate else 'http'
        return f'{scheme}://{self.host}:{self.port}'

    @property
    def directory(self) -> str:
        """The temporary directory holding config, data and log."""
        if self._dir is None:
            raise InfluxServerError('server is closed')
        return self._dir

    @property
    def pid(self) -> int | None:
        """Process id of the running influxd, if any."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the influxd process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def frozen(self) -> bool:
        """Whether the process is stopped with SIGSTOP."""
        return self._frozen

    @property
    def credentials(self) -> tuple[str, str] | None:
        """Admin credentials used by the helpers, if any."""
        return self._auth

    # -- lifecycle ----------------------------------------------------------

    def _pick_rpc_port(self) -> int:
        port = free_port()
        while port == self._port:
            port = free_port()
        return port

    def _write_config(self) -> None:
        directory = self.directory
        lines = [
            'reporting-disabled = true',
            f'bind-address = "{LOCALHOST}:{self._rpc_port}"',
            '',
            '[meta]',
            f'  dir = "{os.path.join(directory, "meta")}"',
            '  logging-enabled = false',
            '',
            '[data]',
            f'  dir = "{os.path.join(directory, "data")}"',
            f'  wal-dir = "{os.path.join(directory, "wal")}"',
            '  query-log-enabled = false',
            '',
            '[monitor]',
            '  store-enabled = false',
            '',
            '[subscriber]',
            '  enabled = false',
            '',
            '[retention]',
            '  enabled = false',
            '',
            '[shard-precreation]',
            '  enabled = false',
            '',
            '[continuous_queries]',
            '  enabled = false',
            '  log-enabled = false',
            '',
            '[http]',
            '  enabled = true',
            f'  bind-address = "{LOCALHOST}:{self._port}"',
            f'  auth-enabled = {"true" if self.auth_enabled else "false"}',
            '  log-enabled = false',
            '  pprof-enabled = false',
        ]
        if self.max_body_size is not None:
            lines.append(f'  max-body-size = {int(self.max_body_size)}')
        if self.https_certificate:
            lines += [
                '  https-enabled = true',
                f'  https-certificate = "{self.https_certificate}"',
                f'  https-private-key = "{self.https_private_key or ""}"',
            ]
        lines += [
            '',
            '[logging]',
            '  level = "warn"',
            '  suppress-logo = true',
            '',
        ]
        with open(self.config_path, 'w', encoding='utf-8') as handle:
            handle.write('\n'.join(lines))

    def start(self) -> None:
        """Start influxd and wait until ``/ping`` answers 204."""
        if self._dir is None:
            raise InfluxServerError('server is closed')
        if self.running:
            return
        attempts = 1 if self._fixed_port or self._started_once else 3
        for attempt in range(attempts):
            try:
                self._start_once()
            except InfluxServerError as exc:
                address_in_use = 'address already in use' in str(exc)
                if not address_in_use or attempt == attempts - 1:
                    raise
                # Lost the race for the free ports: pick new ones.
                self._port = free_port()
                self._rpc_port = self._pick_rpc_port()
                self._write_config()
            else:
                self._started_once = True
                return

    def _start_once(self) -> None:
        self._log_file = open(self.log_path, 'ab')  # noqa: SIM115
        self._process = subprocess.Popen(
            [self.executable, 'run', '-config', self.config_path],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
            start_new_session=True,
        )
        self._frozen = False
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(timeout=1.0, verify=self._verify) as client:
            while True:
                if self._process.poll() is not None:
                    code = self._process.returncode
                    self._reap()
                    raise InfluxServerError(
                        f'influxd exited with status {code} during start'
                        f'\n{self.log_tail()}'
                    )
                try:
                    response = client.get(f'{self.url}/ping')
                except httpx.TransportError:
                    pass
                else:
                    if response.status_code == 204:
                        return
                if time.monotonic() > deadline:
                    self._kill()
                    raise InfluxServerError(
                        f'influxd did not answer /ping on {self.url} within '
                        f'{START_TIMEOUT}s\n{self.log_tail()}'
                    )
                time.sleep(POLL_INTERVAL)

    def stop(self) -> None:
        """Stop influxd with SIGTERM (SIGKILL after 10 s); keep the data."""
        if self._process is None:
            return
        if self._frozen:
            self.thaw()
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._reap()

    def restart(self) -> None:
        """Stop and start again on the same ports and data directory."""
        self.stop()
        self.start()

    def freeze(self) -> None:
        """Suspend the process (SIGSTOP): connections hang."""
        if not self.running:
            raise InfluxServerError('influxd is not running')
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        """Resume a frozen process (SIGCONT)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)
        self._frozen = False

    def close(self) -> None:
        """Stop the process and remove the temporary directory."""
        try:
            self.stop()
        finally:
            self._client.close()
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def _kill(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
        self._reap()

    def _reap(self) -> None:
        if self._process is not None:
            self._process.wait()
            self._process = None
        self._frozen = False
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 30) -> str:
        """Return the last ``lines`` lines of the influxd log."""
        try:
            with open(self.log_path, 'rb') as handle:
                data = handle.read()
        except OSError:
            return '<no log>'
        tail = data.decode('utf-8', 'replace').splitlines()[-lines:]
        return '\n'.join(tail)

    def __enter__(self) -> InfluxServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = 'running' if self.running else 'stopped'
        return f'<InfluxServer {self.url} {state}>'

    # -- helpers ------------------------------------------------------------

    def create_admin(self, username: str, password: str) -> None:
        """Create an admin user; later helper calls authenticate as it."""
        self.query(
            f'CREATE USER {quote_ident(username)} WITH PASSWORD '
            f'{quote_string(password)} WITH ALL PRIVILEGES'
        )
        self._auth = (username, password)

    def query(
        self,
        q: str,
        db: str | None = None,
        epoch: str | None = 'ms',
        *,
        method: str | None = None,
    ) -> dict[str, typing.Any]:
        """Run an InfluxQL query and return the decoded JSON.

        SELECT and SHOW are sent with GET, anything else with POST unless
        ``method`` is given. Raises :class:`InfluxQueryError` on an HTTP
        error or when any statement result carries an ``error``.
        """
        if method is None:
            verb = q.lstrip().split(None, 1)[0].upper() if q.strip() else ''
            method = 'GET' if verb in ('SELECT', 'SHOW') else 'POST'
        params = {'q': q}
        if db is not None:
            params['db'] = db
        if epoch is not None:
            params['epoch'] = epoch
        response = self._client.request(
            method,
            f'{self.url}/query',
            params=params,
            auth=self._auth,
        )
        try:
            payload: dict[str, typing.Any] = response.json()
        except ValueError:
            payload = {}
        if response.status_code >= 300:
            raise InfluxQueryError(
                f'{q!r} failed with HTTP {response.status_code}: '
                f'{payload.get("error") or response.text}'
            )
        if 'error' in payload:
            raise InfluxQueryError(f'{q!r} failed: {payload["error"]}')
        for result in payload.get('results', []):
            if 'error' in result:
                raise InfluxQueryError(f'{q!r} failed: {result["error"]}')
        return payload

    def write(
        self,
        db: str,
        data: str | bytes | typing.Iterable[str],
        precision: str = 'ms',
    ) -> None:
        """Write line protocol directly (bypassing the library)."""
        if isinstance(data, str):
            body = data.encode()
        elif isinstance(data, bytes):
            body = data
        else:
            body = '\n'.join(data).encode()
        response = self._client.post(
            f'{self.url}/write',
            params={'db': db, 'precision': precision},
            content=body,
            auth=self._auth,
        )
        if response.status_code != 204:
            raise InfluxQueryError(
                f'write failed with HTTP {response.status_code}: '
                f'{response.text}'
            )

    def create_database(self, name: str) -> None:
        """Create a database (no-op if it exists)."""
        self.query(f'CREATE DATABASE {quote_ident(name)}')

    def drop_database(self, name: str) -> None:
        """Drop a database (no-op if it does not exist)."""
        self.query(f'DROP DATABASE {quote_ident(name)}')

    def databases(self) -> list[str]:
        """Names of all databases."""
        return [row['name'] for row in self._show('SHOW DATABASES')]

    def rows(self, db: str, measurement: str) -> list[dict[str, object]]:
        """Every point of ``measurement`` as ``{column: value}`` dicts.

        Columns are ``time`` (epoch milliseconds), tags and fields.
        """
        return self._show(f'SELECT * FROM {quote_ident(measurement)}', db)

    def count(self, db: str, measurement: str) -> int:
        """Number of points stored in ``measurement``."""
        return len(self.rows(db, measurement))

    def field_types(self, db: str, measurement: str) -> dict[str, str]:
        """Map field name to ``float``/``integer``/``string``/``boolean``."""
        rows = self._show(
            f'SHOW FIELD KEYS FROM {quote_ident(measurement)}', db
        )
        return {str(r['fieldKey']): str(r['fieldType']) for r in rows}

    def tag_keys(self, db: str, measurement: str) -> set[str]:
        """Tag keys of ``measurement``."""
        rows = self._show(f'SHOW TAG KEYS FROM {quote_ident(measurement)}', db)
        return {str(r['tagKey']) for r in rows}

    def measurements(self, db: str) -> list[str]:
        """Names of the measurements in ``db``."""
        return [str(r['name']) for r in self._show('SHOW MEASUREMENTS', db)]

    def _show(self, q: str, db: str | None = None) -> list[dict[str, object]]:
        """Run a read query and flatten all series into row dicts."""
        payload = self.query(q, db)
        rows: list[dict[str, object]] = []
        for result in payload.get('results', []):
            for series in result.get('series', []):
                columns = series.get('columns', [])
                for values in series.get('values', []):
                    rows.append(dict(zip(columns, values)))
        return rows


# --------------------------------------------------------------------------
# VictoriaServer
# --------------------------------------------------------------------------


class VictoriaServerError(RuntimeError):
    """The victoria-metrics process could not be started or stopped."""


class VictoriaQueryError(RuntimeError):
    """A VictoriaMetrics write, flush or export answered an HTTP error."""


#: Tokens the export API writes for non-finite values, which are not JSON.
_NON_FINITE = {'+Inf': 'Infinity', '-Inf': '-Infinity', 'NaN': 'NaN'}
_VALUES = '"values":['


@dataclasses.dataclass(frozen=True)
class Series:
    """One series read back through ``/api/v1/export``.

    ``name`` is the metric name (``__name__``), ``labels`` the other
    labels; ``values`` and ``timestamps`` (epoch milliseconds) are in the
    order the export gave them, which for samples sharing a millisecond is
    not the order they were written: compare :attr:`points` instead.
    """

    name: str
    labels: dict[str, str]
    values: list[float]
    timestamps: list[int]

    @property
    def points(self) -> list[tuple[int, float]]:
        """``(timestamp_ms, value)`` pairs, sorted."""
        return sorted(zip(self.timestamps, self.values))


class VictoriaServer:
    """A throwaway single-node ``victoria-metrics`` process.

    Nothing is started until :meth:`start` (or ``with``) is called.  The
    data lives in a per-instance temporary ``-storageDataPath`` that
    :meth:`restart` keeps and :meth:`close` removes.

    How VictoriaMetrics 1.79 (Debian's ``victoria-metrics``) maps InfluxDB
    line protocol, as found against this binary (``tests/test_victoria.py``
    pins what the library relies on):

    - Endpoints: ``/write`` and ``/influx/write`` (v1), ``/api/v2/write``
      and ``/influx/api/v2/write`` (v2) all parse the same way and answer
      ``204`` with ``X-Influxdb-Version: 1.8.0``.  ``/api/v2/ping``,
      ``/influx/ping`` and ``/api/v3/write_lp`` are ``400 unsupported
      path``.  The cluster's ``vminsert`` takes the same bodies on
      ``/insert/<accountID>/influx/write`` and
      ``/insert/<accountID>/influx/api/v2/write`` (``accountID`` or
      ``accountID:projectID`` is the tenant); the single-node binary
      answers ``400 unsupported path`` there.
    - ``db`` (either endpoint) becomes the label ``db`` (renamed by
      ``-influxDBLabel``); without ``db`` there is no such label.
      ``bucket``, ``org`` and ``rp`` are ignored: a v2 write with
      ``bucket=b`` and no ``db`` stores no ``db`` label.  A v2 write
      without ``org``/``bucket`` is accepted (``204``).
    - Each field becomes one series named ``{measurement}_{field}``
      (``-influxMeasurementFieldSeparator`` changes ``_``;
      ``-influxSkipSingleField`` and ``-influxSkipMeasurement`` drop parts
      of the name); tags become labels; escapes are undone
      (``esc\\ m\\,x,t\\ k=a\\,b f\\=x=1`` gives ``esc m,x_f=x{t k="a,b"}``).
    - Every value is a float64: integers (``i``, ``u``) and floats as
      such (integers above 2**53 lose precision); booleans ``1``/``0``;
      a string field is parsed as a number when it holds one (``"12.5"``
      is 12.5) and is ``0`` otherwise; ``NaN`` is not exported, ``inf``
      comes back as ``+Inf``.  Floats are stored as decimals and keep
      about 12 significant digits (``math.pi`` comes back as
      3.141592653589, ``0.1 + 0.2`` as 0.3, ``5e-324`` as 0): compare
      short decimals only.
    - Timestamps are stored in milliseconds, truncated
      (``-influxTrimTimestamp``, default 1ms).  Samples of one series
      that fall in the same millisecond are all kept (no deduplication
      unless ``-dedup.minScrapeInterval`` is set, which keeps one).
      ``precision`` ``ns``, ``us`` (or ``u``), ``ms``, ``s``, ``m`` and
      ``h`` are taken as given on both endpoints (``us`` is microseconds,
      unlike influxd 1.6).  Without ``precision``, and for ``n`` or any
      other unknown name, the unit is guessed from the magnitude (10
      digits seconds, 13 ms, 16 us, 19 ns).  A line without a timestamp
      gets the server's time.  Points older than the retention
      (``-retentionPeriod``, one month) or more than two days ahead are
      dropped with a warning in the log and a ``204``.
    - A line it cannot parse is skipped and logged; the request still
      answers ``204`` and the good lines of the body are stored.  CRLF
      line endings are accepted.  ``Content-Encoding: gzip`` is accepted;
      a body that is not gzip answers ``400`` with a plain-text message.
    - No auth header is checked unless ``-httpAuth.username`` is set;
      then every write needs HTTP Basic auth (``u``/``p`` query
      parameters, ``Token`` and ``Bearer`` are refused with ``401``,
      ``WWW-Authenticate: Basic realm="VictoriaMetrics"``) while
      ``/ping`` and ``/health`` stay open.
    - ``/ping`` answers ``204`` without ``X-Influxdb-Version``;
      ``/health`` answers ``200 OK``.
    - New points become visible to the export API after
      ``/internal/force_flush`` (:meth:`flush`); the export's default
      ``end`` is *now*, so points later than the request are left out
      unless ``end`` is given, which :meth:`export` does.
      ``/api/v1/query`` may still miss them for about a second, whatever
      ``-search.latencyOffset`` and ``-search.disableCache`` say: read
      through :meth:`series`, never through queries.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        executable: str | None = None,
        http_auth: tuple[str, str] | None = None,
        extra_args: typing.Sequence[str] = (),
    ) -> None:
        self.executable = (
            executable
            or shutil.which('victoria-metrics')
            or 'victoria-metrics'
        )
        self.http_auth = http_auth
        self.extra_args = tuple(extra_args)
        self._fixed_port = port is not None
        self._port = port if port is not None else free_port()
        self._dir: str | None = tempfile.mkdtemp(prefix='victoria-')
        self.log_path = os.path.join(self._dir, 'victoria-metrics.log')
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: typing.BinaryIO | None = None
        self._frozen = False
        self._started_once = False
        self._client = httpx.Client(timeout=10.0, auth=http_auth)

    # -- properties ---------------------------------------------------------

    @property
    def host(self) -> str:
        """The HTTP host (always 127.0.0.1)."""
        return LOCALHOST

    @property
    def port(self) -> int:
        """The HTTP port."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the HTTP API, e.g. ``http://127.0.0.1:8428``."""
        return f'http://{self.host}:{self.port}'

    @property
    def directory(self) -> str:
        """The temporary directory holding the data and the log."""
        if self._dir is None:
            raise VictoriaServerError('server is closed')
        return self._dir

    @property
    def data_path(self) -> str:
        """The ``-storageDataPath`` directory."""
        return os.path.join(self.directory, 'data')

    @property
    def pid(self) -> int | None:
        """Process id of the running server, if any."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def frozen(self) -> bool:
        """Whether the process is stopped with SIGSTOP."""
        return self._frozen

    # -- lifecycle ----------------------------------------------------------

    def command(self) -> list[str]:
        """The command line that :meth:`start` runs."""
        args = [
            self.executable,
            f'-storageDataPath={self.data_path}',
            f'-httpListenAddr={LOCALHOST}:{self._port}',
            # Warnings and errors only: rejected lines and dropped points
            # are what log_tail() is for.
            '-loggerLevel=WARN',
        ]
        if self.http_auth is not None:
            args += [
                f'-httpAuth.username={self.http_auth[0]}',
                f'-httpAuth.password={self.http_auth[1]}',
            ]
        return args + list(self.extra_args)

    def start(self) -> None:
        """Start the server and wait until ``/health`` answers 200."""
        if self._dir is None:
            raise VictoriaServerError('server is closed')
        if self.running:
            return
        attempts = 1 if self._fixed_port or self._started_once else 3
        for attempt in range(attempts):
            try:
                self._start_once()
            except VictoriaServerError as exc:
                address_in_use = 'address already in use' in str(exc)
                if not address_in_use or attempt == attempts - 1:
                    raise
                # Lost the race for the free port: pick a new one.
                self._port = free_port()
            else:
                self._started_once = True
                return

    def _start_once(self) -> None:
        self._log_file = open(self.log_path, 'ab')  # noqa: SIM115
        self._process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
            start_new_session=True,
        )
        self._frozen = False
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(timeout=1.0) as client:
            while True:
                if self._process.poll() is not None:
                    code = self._process.returncode
                    self._reap()
                    raise VictoriaServerError(
                        f'victoria-metrics exited with status {code} during '
                        f'start\n{self.log_tail()}'
                    )
                try:
                    response = client.get(f'{self.url}/health')
                except httpx.TransportError:
                    pass
                else:
                    if response.status_code == 200:
                        return
                if time.monotonic() > deadline:
                    self._kill()
                    raise VictoriaServerError(
                        f'victoria-metrics did not answer /health on '
                        f'{self.url} within {START_TIMEOUT}s\n'
                        f'{self.log_tail()}'
                    )
                time.sleep(POLL_INTERVAL)

    def stop(self) -> None:
        """Stop with SIGTERM (SIGKILL after 10 s); keep the data."""
        if self._process is None:
            return
        if self._frozen:
            self.thaw()
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._reap()

    def restart(self) -> None:
        """Stop and start again on the same port and data directory."""
        self.stop()
        self.start()

    def freeze(self) -> None:
        """Suspend the process (SIGSTOP): connections hang."""
        if not self.running:
            raise VictoriaServerError('victoria-metrics is not running')
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        """Resume a frozen process (SIGCONT)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)
        self._frozen = False

    def close(self) -> None:
        """Stop the process and remove the temporary directory."""
        try:
            self.stop()
        finally:
            self._client.close()
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def _kill(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
        self._reap()

    def _reap(self) -> None:
        if self._process is not None:
            self._process.wait()
            self._process = None
        self._frozen = False
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 30) -> str:
        """Return the last ``lines`` lines of the server's log."""
        try:
            with open(self.log_path, 'rb') as handle:
                data = handle.read()
        except OSError:
            return '<no log>'
        tail = data.decode('utf-8', 'replace').splitlines()[-lines:]
        return '\n'.join(tail)

    def __enter__(self) -> VictoriaServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = 'running' if self.running else 'stopped'
        return f'<VictoriaServer {self.url} {state}>'

    # -- helpers ------------------------------------------------------------

    def post(
        self,
        path: str,
        data: str | bytes | typing.Iterable[str],
        params: typing.Mapping[str, str] | None = None,
        *,
        compress: bool = False,
        headers: typing.Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """POST line protocol to ``path`` and return the raw answer.

        ``data`` is sent as is (an iterable of lines is joined with line
        feeds); ``compress`` gzips it with ``Content-Encoding: gzip``.
        Authenticates with ``http_auth`` when it is set.
        """
        if isinstance(data, str):
            body = data.encode()
        elif isinstance(data, bytes):
            body = data
        else:
            body = '\n'.join(data).encode()
        sent = dict(headers or {})
        if compress:
            body = gzip.compress(body)
            sent['Content-Encoding'] = 'gzip'
        return self._client.post(
            f'{self.url}{path}',
            params=dict(params or {}),
            content=body,
            headers=sent,
        )

    def write(
        self,
        data: str | bytes | typing.Iterable[str],
        db: str | None = None,
        precision: str = 'ms',
    ) -> None:
        """Write line protocol through ``/write``; raise unless 204."""
        params = {'precision': precision}
        if db is not None:
            params['db'] = db
        response = self.post('/write', data, params)
        if response.status_code != 204:
            raise VictoriaQueryError(
                f'write failed with HTTP {response.status_code}: '
                f'{response.text}'
            )

    def flush(self) -> None:
        """Make every point received so far visible to the export API."""
        response = self._client.get(f'{self.url}/internal/force_flush')
        if response.status_code != 200:
            raise VictoriaQueryError(
                f'force_flush failed with HTTP {response.status_code}: '
                f'{response.text}'
            )

    def export(
        self, match: str = '{__name__!=""}'
    ) -> list[dict[str, typing.Any]]:
        """Every series matching the selector, as the export API gives it.

        Each item is one decoded JSON line: ``metric`` (the labels with
        ``__name__``), ``values`` and ``timestamps``.  The range is all
        time up to two days ahead (the furthest the server accepts), so
        points written with a timestamp later than now are included.
        Does not flush: see :meth:`series`.
        """
        end = int(time.time()) + 3 * 86400
        response = self._client.post(
            f'{self.url}/api/v1/export',
            data={'match[]': match, 'start': '0', 'end': str(end)},
        )
        if response.status_code != 200:
            raise VictoriaQueryError(
                f'export of {match} failed with HTTP '
                f'{response.status_code}: {response.text}'
            )
        return [
            _decode_export_line(line)
            for line in response.text.splitlines()
            if line.strip()
        ]

    def series(self, match: str = '{__name__!=""}') -> list[Series]:
        """Flush, then every series matching ``match``, sorted by labels.

        ``match`` is a series selector: ``'cpu_load'``,
        ``'{db="mydb"}'``, ``'{__name__=~"cpu_.*", host="a"}'``.
        """
        self.flush()
        found = [
            Series(
                name=str(item['metric'].get('__name__', '')),
                labels={
                    str(k): str(v)
                    for k, v in item['metric'].items()
                    if k != '__name__'
                },
                values=[float(v) for v in item['values']],
                timestamps=[int(t) for t in item['timestamps']],
            )
            for item in self.export(match)
        ]
        return sorted(found, key=lambda s: (s.name, sorted(s.labels.items())))

    def wait_for_points(
        self,
        match: str,
        count: int,
        timeout: float = 5.0,
    ) -> list[Series]:
        """Wait until ``match`` has at least ``count`` samples; return them.

        For writes the test did not make itself (a background writer):
        flushes and reads again until the samples are there.  Raises
        :class:`TimeoutError` with what was found otherwise.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = self.series(match)
            total = sum(len(s.values) for s in found)
            if total >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f'{total} of {count} samples for {match} after '
                    f'{timeout}s: {found}\n{self.log_tail()}'
                )
            time.sleep(POLL_INTERVAL)


def _decode_export_line(line: str) -> dict[str, typing.Any]:
    """Decode one export line, whose values may be ``+Inf`` or ``NaN``."""
    # The values array comes after the labels, which may hold any text.
    head, _, rest = line.rpartition(_VALUES)
    values, _, tail = rest.partition(']')
    tokens = (_NON_FINITE.get(t, t) for t in values.split(','))
    decoded: dict[str, typing.Any] = json.loads(
        f'{head}{_VALUES}{",".join(tokens)}]{tail}'
    )
    return decoded


# --------------------------------------------------------------------------
# FaultServer
# --------------------------------------------------------------------------


class _Forward(enum.Enum):
    FORWARD = 'FORWARD'

    def __repr__(self) -> str:
        return 'FORWARD'


FORWARD = _Forward.FORWARD
"""Action sentinel: proxy the request to the upstream server."""


@dataclasses.dataclass
class Response:
    """A scripted response; ``delay`` seconds are slept before answering.

    ``repeat`` sends the body that many times over (a huge body without
    holding it in memory); ``trickle`` sends it one byte at a time, that
    many seconds apart.  What was sent, and when the client went away, is
    recorded in the :class:`RecordedRequest`.  A body is sent with a
    guessed ``Content-Type`` unless ``headers`` name one or
    ``guess_content_type`` is false (as InfluxDB 3, which sends its JSON
    errors without one).
    """

    status: int
    body: bytes | str = b''
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0
    repeat: int = 1
    trickle: float = 0.0
    guess_content_type: bool = True

    @classmethod
    def from_json(
        cls,
        status: int,
        payload: object,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> Response:
        """Build a response with a JSON body."""
        return cls(status, json.dumps(payload), dict(headers or {}), delay)

    @classmethod
    def error(cls, status: int, message: str, delay: float = 0.0) -> Response:
        """Build an InfluxDB-style error response."""
        return cls(
            status,
            json.dumps({'error': message}),
            {'X-Influxdb-Error': message},
            delay,
        )


Action = typing.Union[Response, _Forward]
Rule = typing.Callable[['RecordedRequest'], typing.Optional[Action]]


@dataclasses.dataclass
class RecordedRequest:
    """One request received by a :class:`FaultServer`."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    arrived: float
    target: str = ''
    status: int | None = None
    forwarded: bool = False
    #: Response body bytes handed to the network before the end (or
    #: before the client went away).
    sent: int = 0
    #: When the response was complete, or the client went away.
    finished: float | None = None
    #: Whether the client closed the connection before the whole body
    #: was sent.
    abandoned: bool = False

    @property
    def text(self) -> str:
        """Body decoded as UTF-8, gunzipped if Content-Encoding is gzip."""
        body = self.body
        if self.headers.get('content-encoding', '').lower() == 'gzip':
            body = gzip.decompress(body)
        return body.decode('utf-8')

    @property
    def lines(self) -> list[str]:
        """Non-empty lines of :attr:`text`."""
        return [line for line in self.text.split('\n') if line]

    @property
    def query_items(self) -> list[tuple[str, str]]:
        """Query parameters as sent: every pair, in order, decoded."""
        query = urllib.parse.urlsplit(self.target).query
        return urllib.parse.parse_qsl(query, keep_blank_values=True)


_RELAYED_HEADERS = (
    'Content-Type',
    'X-Influxdb-Error',
    'X-Influxdb-Version',
    'Retry-After',
    'Request-Id',
    'WWW-Authenticate',
)
_FORWARDED_HEADERS = ('Content-Type', 'Content-Encoding', 'Authorization')


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: FaultServer

    def __init__(self, owner: FaultServer) -> None:
        self.owner = owner
        self.lock = threading.Lock()
        self.connections: dict[threading.Thread, socket.socket] = {}
        self.upstream_sockets: set[socket.socket] = set()
        super().__init__((LOCALHOST, 0), _Handler)

    def process_request(
        self, request: typing.Any, client_address: typing.Any
    ) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f'FaultServer-{self.server_address[1]}-conn',
            daemon=True,
        )
        with self.lock:
            self.connections[thread] = request
        thread.start()

    def process_request_thread(
        self, request: typing.Any, client_address: typing.Any
    ) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.lock:
                self.connections.pop(threading.current_thread(), None)

    def handle_error(
        self, request: typing.Any, client_address: typing.Any
    ) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return  # client went away, or we are shutting down
        self.owner.errors.append(traceback.format_exc())
        super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server: _HTTPServer

    def log_message(self, format: str, *args: typing.Any) -> None:
        """Keep the test output quiet."""

    def _read_body(self) -> bytes:
        if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
            chunks = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b';', 1)[0].strip() or b'0', 16)
                if size == 0:
                    while self.rfile.readline() not in (b'\r\n', b'\n', b''):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b''.join(chunks)
        length = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(length) if length else b''

    def _handle(self) -> None:
        arrived = time.monotonic()
        body = self._read_body()
        split = urllib.parse.urlsplit(self.path)
        record = RecordedRequest(
            method=self.command,
            path=split.path,
            query=dict(urllib.parse.parse_qsl(split.query, True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            arrived=arrived,
            target=self.path,
        )
        owner = self.server.owner
        owner._record(record)
        response = owner._respond(record)
        if response.delay > 0 and owner._closing.wait(response.delay):
            self.close_connection = True
            return
        self._send(record, response)

    def _send(self, record: RecordedRequest, response: Response) -> None:
        body = response.body
        if isinstance(body, str):
            body = body.encode('utf-8')
        status = response.status
        no_body = status in (204, 304) or 100 <= status < 200
        if no_body:
            body = b''
        headers = {k.lower(): (k, v) for k, v in response.headers.items()}
        guess = response.guess_content_type
        if body and guess and 'content-type' not in headers:
            if body.lstrip()[:1] in (b'{', b'['):
                headers['content-type'] = ('Content-Type', 'application/json')
            else:
                headers['content-type'] = ('Content-Type', 'text/plain')
        headers.pop('content-length', None)
        headers.pop('transfer-encoding', None)
        if headers.get('connection', ('', ''))[1].lower() == 'close':
            self.close_connection = True
        # Recorded before the client can see the answer, so that a test
        # reading ``status`` right after its request returns finds it.
        record.status = status
        self.send_response(status)
        for name, value in headers.values():
            self.send_header(name, value)
        if not no_body:
            length = len(body) * response.repeat
            self.send_header('Content-Length', str(length))
        try:
            self.end_headers()
            if body and self.command != 'HEAD':
                self._send_body(record, response, body)
            self.wfile.flush()
        except OSError:
            record.abandoned = True
            self.close_connection = True
        finally:
            record.finished = time.monotonic()

    def _send_body(
        self, record: RecordedRequest, response: Response, body: bytes
    ) -> None:
        closing = self.server.owner._closing
        for _ in range(response.repeat):
            if response.trickle <= 0:
                self.wfile.write(body)
                record.sent += len(body)
                continue
            for at in range(len(body)):
                if closing.wait(response.trickle):
                    self.close_connection = True
                    return
                self.wfile.write(body[at : at + 1])
                record.sent += 1

    do_GET = do_POST = do_PUT = _handle  # noqa: N815
    do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle  # noqa: N815


class FaultServer:
    """Scripted HTTP/1.1 server that records requests and injects faults.

    For each request the action is taken from, in order: the scripted
    queue (:meth:`script`), the rule (:meth:`set_rule`) if it returns
    something, then the default: :data:`FORWARD` to ``upstream`` if one
    is set, else ``204 No Content``.
    """

    def __init__(
        self,
        upstream: str | None = None,
        *,
        forward_timeout: float = 30.0,
    ) -> None:
        self.upstream = upstream.rstrip('/') if upstream else None
        self.forward_timeout = forward_timeout
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._queue: collections.deque[Action] = collections.deque()
        self._rule: Rule | None = None
        self._closing = threading.Event()
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- properties ---------------------------------------------------------

    @property
    def host(self) -> str:
        """Always 127.0.0.1."""
        return LOCALHOST

    @property
    def port(self) -> int:
        """The listening port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError('FaultServer is not started')
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        return f'http://{self.host}:{self.port}'

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the recorded requests, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def pending(self) -> int:
        """Number of scripted actions not consumed yet."""
        with self._lock:
            return len(self._queue)

    # -- scripting ----------------------------------------------------------

    def script(self, *responses: Action) -> None:
        """Queue actions consumed one per request, in order."""
        with self._lock:
            self._queue.extend(responses)

    def set_rule(self, rule: Rule | None) -> None:
        """Set (or clear) the rule consulted once the queue is empty."""
        with self._lock:
            self._rule = rule

    def clear(self) -> None:
        """Forget recorded requests and scripted actions."""
        with self._lock:
            self._requests.clear()
            self._queue.clear()

    def wait_for_requests(
        self, count: int, timeout: float = 5.0
    ) -> list[RecordedRequest]:
        """Wait until ``count`` requests have been answered; return them."""
        deadline = time.monotonic() + timeout
        while True:
            requests = self.requests
            done = [r for r in requests if r.status is not None]
            if len(done) >= count:
                return requests
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f'{len(done)} of {count} requests after {timeout}s'
                )
            time.sleep(POLL_INTERVAL)

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> FaultServer:
        """Start serving in a background thread."""
        if self._server is not None:
            return self
        self._closing.clear()
        self._server = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={'poll_interval': 0.05},
            name=f'FaultServer-{self.port}',
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, drop open connections and join all threads."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._closing.set()
        server.shutdown()
        if thread is not None:
            thread.join()
        with server.lock:
            threads = dict(server.connections)
            sockets = [*threads.values(), *server.upstream_sockets]
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for conn_thread in threads:
            conn_thread.join(5.0)
        server.server_close()
        self._server = None
        self._thread = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else 'stopped'
        return f'<FaultServer {where} upstream={self.upstream}>'

    # -- request handling (called from handler threads) ---------------------

    def _record(self, record: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(record)

    def _respond(self, record: RecordedRequest) -> Response:
        with self._lock:
            action: Action | None = (
                self._queue.popleft() if self._queue else None
            )
            rule = self._rule
        if action is None and rule is not None:
            action = rule(record)
        if action is None:
            action = FORWARD if self.upstream else Response(204)
        if action is FORWARD:
            record.forwarded = True
            return self._forward(record)
        assert isinstance(action, Response)
        return action

    def _forward(self, record: RecordedRequest) -> Response:
        if not self.upstream:
            return Response.error(502, 'FaultServer has no upstream')
        assert self._server is not None
        parts = urllib.parse.urlsplit(self.upstream)
        conn = http.client.HTTPConnection(
            parts.hostname or LOCALHOST,
            parts.port or 80,
            timeout=self.forward_timeout,
        )
        headers = {
            name: record.headers[name.lower()]
            for name in _FORWARDED_HEADERS
            if name.lower() in record.headers
        }
        server = self._server
        try:
            conn.connect()
            sock = conn.sock
            assert sock is not None
            with server.lock:
                server.upstream_sockets.add(sock)
            try:
                conn.request(
                    record.method,
                    record.target,
                    body=record.body,
                    headers=headers,
                )
                upstream = conn.getresponse()
                body = upstream.read()
            finally:
                with server.lock:
                    server.upstream_sockets.discard(sock)
        except (OSError, http.client.HTTPException) as exc:
            return Response.error(502, f'upstream failed: {exc!r}')
        finally:
            conn.close()
        relayed = {
            name: value
            for name in _RELAYED_HEADERS
            if (value := upstream.getheader(name)) is not None
        }
        return Response(upstream.status, body, relayed)
