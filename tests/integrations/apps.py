"""Run the example applications of integrations/ as real servers."""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import typing

import httpx

from tests.helpers import ROOT, clean_environment, wait_for
from tests.servers import (
    InfluxServer,
    free_port,
    listeners,
    listens,
    quote_string,
)


class Server(typing.Protocol):
    """What an application needs of the server it writes to: an
    :class:`InfluxServer` or a :class:`~tests.servers.VictoriaServer`."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def url(self) -> str: ...


class AppServer:
    """An example application served in a child process."""

    def __init__(
        self,
        command: list[str],
        influxdb: Server,
        database: str,
        env: dict[str, str] | None = None,
        *,
        defaults: bool = False,
    ) -> None:
        if defaults:
            # As a new user runs it: the server's URL and nothing else.
            settings = {'INFLUXDB_URL': influxdb.url}
        else:
            settings = {
                'INFLUXDB_HOST': influxdb.host,
                'INFLUXDB_PORT': str(influxdb.port),
                'INFLUXDB_INTERVAL': '200',
            }
        environ = clean_environment(
            **settings, REQUEST_DATABASE=database, **(env or {})
        )
        # Output to a file: a pipe read only at the end would fill up with
        # the application's logs and stop it.
        for attempt in range(5):
            self.port = free_port()
            self.url = f'http://127.0.0.1:{self.port}'
            self._log = tempfile.TemporaryFile(mode='w+')  # noqa: SIM115
            self._stopped_output = ''
            self.process = subprocess.Popen(
                [
                    arg.replace('{port}', str(self.port)).replace(
                        '{python}', sys.executable
                    )
                    for arg in command
                ],
                env=environ,
                cwd=ROOT,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                text=True,
            )
            # A connection per request: servers close theirs after an
            # error.
            self.client = httpx.Client(
                base_url=self.url,
                timeout=10,
                limits=httpx.Limits(max_keepalive_connections=0),
            )
            try:
                wait_for(
                    self._ready, timeout=20, message=f'{command} to listen'
                )
            except PortTakenError:
                # Another test's server took the port first: another one.
                self.client.close()
                self._log.close()
                if attempt == 4:
                    raise
                continue
            break

    def _ready(self) -> bool:
        try:
            if not _listening(self.process, self.port):
                return False
        except ExitedError:
            raise RuntimeError(
                f'the application exited:\n{self._output()}'
            ) from None
        try:
            self.client.get('/')
        except httpx.TransportError:
            return False
        return True

    def stop(self) -> str:
        """Stop it the way a process manager does; return its output."""
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self._output()

    def _output(self) -> str:
        if not self._log.closed:
            self._log.seek(0)
            self._stopped_output = self._log.read()
            if self.process.poll() is not None:
                self._log.close()
        return self._stopped_output


def drive(url: str, path: str, count: int, concurrency: int = 16) -> int:
    """Send *count* GET requests to *path*, *concurrency* at a time.

    :returns: how many were answered with 200
    """
    requests = iter(range(count))
    lock = threading.Lock()
    answered = 0

    def work() -> None:
        nonlocal answered
        with httpx.Client(base_url=url, timeout=30) as client:
            while True:
                with lock:
                    if next(requests, None) is None:
                        return
                if client.get(path).status_code == 200:
                    with lock:
                        answered += 1

    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answered


def stored_times(
    influxdb: InfluxServer, database: str, endpoint: str
) -> list[int]:
    """The times, in nanoseconds, of the requests stored for *endpoint*.

    The measurement is ``shop`` (``SERVICE``), as the tests run the apps.
    """
    where = f'"endpoint" = {quote_string(endpoint)}'
    payload = influxdb.query(
        f'SELECT "duration" FROM shop WHERE {where}', database, epoch='ns'
    )
    series = payload['results'][0].get('series') or [{'values': []}]
    return [int(stamp) for stamp, _ in series[0]['values']]


class PortTakenError(Exception):
    """Another process listens on the port an application was given."""


class ExitedError(Exception):
    """The application exited before it listened, for another reason."""


def _listening(process: subprocess.Popen[str], port: int) -> bool:
    """Whether *process* (or a process it started) listens on *port*.

    :raises PortTakenError: when it exited while another process listens
        there (a server of a test running in parallel took the port after
        :func:`free_port` chose it)
    :raises ExitedError: when it exited otherwise
    """
    if process.poll() is None:
        try:  # cheap; /proc is read only once something accepts
            socket.create_connection(('127.0.0.1', port), 0.2).close()
        except OSError:
            return False
        if listens(process.pid, port):
            return True
        if process.poll() is None:
            return False
    if listeners(port):
        raise PortTakenError(port)
    raise ExitedError(port)


def serve_then_signal(
    command: list[str],
    env: dict[str, str],
    path: str,
    requests: int = 10,
    signum: int = signal.SIGINT,
    *,
    terminal: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Serve an application, send it *requests* GETs and, as soon as the
    last response was read, *signum*; wait for the process to end.

    :param command: the command, run in the repository's root, ``{port}``
        in its arguments replaced by a free port; started again on another
        port when a process of another test took that one first
    :param env: variables to add to a clean environment (``INFLUXDB_*``,
        ``SERVICE`` and ``ENVIRONMENT`` removed)
    :param path: the path to GET
    :param terminal: as a terminal's Ctrl-C: each GET on a new connection
        (so several workers answer), the signal to the process group
    :returns: the process, its output in ``stdout``
    """
    for _ in range(5):
        port = free_port()
        argv = [arg.replace('{port}', str(port)) for arg in command]
        process = subprocess.Popen(
            argv,
            env=clean_environment(**env),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=terminal,
        )
        try:
            try:
                wait_for(
                    functools.partial(_listening, process, port),
                    timeout=30,
                    message=f'{argv} to listen',
                )
            except PortTakenError:
                process.communicate()  # (its output, and the pipe closed)
                continue
            except ExitedError:
                output = process.communicate()[0]
                raise RuntimeError(f'{argv} exited: {output}') from None
            connection = http.client.HTTPConnection(
                '127.0.0.1', port, timeout=10
            )
            for _ in range(requests):
                if terminal:
                    connection.close()
                connection.request('GET', path)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f'{path}: HTTP {response.status}')
            if terminal:
                os.killpg(process.pid, signum)
            else:
                process.send_signal(signum)
            connection.close()
            output, _ = process.communicate(timeout=60)
        finally:
            if terminal:  # (workers a dead master left behind too)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            if process.poll() is None:
                process.kill()
                process.communicate()
        return subprocess.CompletedProcess(
            argv, process.returncode, output, ''
        )
    raise RuntimeError(f'{command}: every port tried was taken')
