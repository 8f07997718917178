"""The HTTP side of the writer: pooled connections, TLS, bounded answers.

:class:`Transport` posts a body of lines to the server, as the write API
of the settings (:mod:`sprockets_influxdb.write_api`) says, within a
deadline for the whole exchange, and reads at most a bounded prefix of
the answer, however large or slow the server makes it.  Network trouble
is raised as :class:`RetryError`, for the writer to keep the lines and try
again.

It speaks HTTP/1.1 itself, with h11 over asyncio streams, keeping up to
``max_clients`` connections open for the next requests: a request costs
a fraction of the CPU an httpx client spends on it (its connection pool
checks every idle connection with system calls at each request, and
each call gives the interpreter lock away to a busy application thread).
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import logging
import math
import ssl
import time
import typing
import urllib.parse

import anyio
import h11

from sprockets_influxdb._version import __version__
from sprockets_influxdb.write_api import Answer, by_name

if typing.TYPE_CHECKING:
    from sprockets_influxdb.config import Settings
    from sprockets_influxdb.writer import Counters

__all__ = ['USER_AGENT', 'RetryError', 'Transport', 'retry_after']

LOGGER = logging.getLogger('sprockets_influxdb')

#: The ``User-Agent`` header of every request.
USER_AGENT = f'sprockets-influxdb/v{__version__}'

_MAX_RETRY_AFTER = 3600.0
# Bytes of a response body read at most.  A 400 is read further, as far as
# a server can need to name the lines of the body it answers (each line
# once, JSON escaping can double it, with a reason of its own), but never
# beyond _READ_MAX: the lines after the last one named are asked about
# again.
_READ_LIMIT = 64 * 1024
_READ_PER_BYTE = 2
_READ_PER_LINE = 128
_READ_MAX = 8 * 1024 * 1024
# Bytes read from the socket at a time.
_CHUNK = 64 * 1024


class RetryError(Exception):
    """A request must be retried later; the lines are kept."""

    def __init__(
        self, message: str, retry_after: float = 0.0, error: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.error = error


class _FailureError(Exception):
    """A network error, named as the writer reports it.

    :param kind: ``ConnectError``, ``ReadError``, ``WriteError``,
        ``RemoteProtocolError`` or ``LocalProtocolError``
    :param error: what was raised
    """

    def __init__(self, kind: str, error: BaseException) -> None:
        detail = _describe(error)
        super().__init__(f'{kind}: {detail}' if detail else kind)
        self.kind = kind


class _Headers(dict[str, str]):
    """Response headers by lower-case name; repeated ones joined."""

    def get(self, name: str, default: typing.Any = None) -> typing.Any:
        """The value of header *name*, whatever its case."""
        return super().get(name.lower(), default)


class _Endpoint:
    """Where requests go, from the URL and TLS settings."""

    __slots__ = ('host', 'host_header', 'key', 'path', 'port', 'tls')

    def __init__(
        self,
        settings: Settings,
        key: tuple[object, ...],
        tls: ssl.SSLContext | None,
    ) -> None:
        parts = urllib.parse.urlsplit(settings.url)
        secure = parts.scheme == 'https'
        self.key = key
        self.tls = tls
        self.host = parts.hostname or 'localhost'
        self.port = parts.port or (443 if secure else 80)
        self.path = parts.path or '/'
        self.host_header = parts.netloc.rpartition('@')[2]
        if (parts.port == 443 and secure) or (parts.port == 80 and not secure):
            self.host_header = self.host_header.rpartition(':')[0]


class _Connection:
    """One open connection and its HTTP/1.1 state."""

    __slots__ = ('endpoint', 'protocol', 'reader', 'writer')

    def __init__(
        self,
        endpoint: _Endpoint,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.endpoint = endpoint
        self.reader = reader
        self.writer = writer
        self.protocol = h11.Connection(h11.CLIENT)

    def usable(self) -> bool:
        """Whether it can carry another request (the server kept it)."""
        return not (self.writer.is_closing() or self.reader.at_eof())

    def close(self) -> None:
        # At once, without TLS's closing exchange: nothing more is sent on
        # it, and a frozen server must not hold the writer.
        self.writer.transport.abort()


class Transport:
    """Posts bodies of lines; owns the connections and the SSL context.

    :param counters: the counters of requests and failed requests
    """

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._endpoint: _Endpoint | None = None
        # Connections open and free, most recently used last.
        self._idle: list[_Connection] = []
        # Connections carrying a request.
        self._busy: set[_Connection] = set()
        # The SSL context and what it was built from.
        self._tls: tuple[tuple[object, ...], ssl.SSLContext] | None = None
        #: Connections that failed (refused, no route, no certificate).
        self.connect_failures = 0

    async def aclose(self) -> None:
        """Close every connection."""
        for connection in [*self._idle, *self._busy]:
            connection.close()
        self._idle = []
        self._busy = set()
        # The sockets are closed by the event loop's next turns.
        for _ in range(3):
            await asyncio.sleep(0)

    async def post(
        self,
        settings: Settings,
        database: str,
        body: bytes,
        precision: str,
        lines: int,
    ) -> Answer:
        """POST lines to *database*; read a bounded prefix of the answer.

        ``request_timeout`` is a deadline for the whole exchange:
        connecting, sending, and receiving the headers and the body.

        :param lines: how many lines *body* holds
        :raises RetryError: for a timeout or a network error
        """
        endpoint = self._current(settings)
        api = by_name(settings.api)
        target = (
            endpoint.path
            + '?'
            + urllib.parse.urlencode(
                api.params(settings, database, precision),
                quote_via=urllib.parse.quote,
            )
        )
        # The body is read as sent, never inflated.
        headers = [
            ('Host', endpoint.host_header),
            ('User-Agent', USER_AGENT),
            ('Accept', 'application/json'),
            ('Accept-Encoding', 'identity'),
            ('Content-Type', 'text/plain; charset=utf-8'),
            *api.headers(settings).items(),
        ]
        size = len(body)
        if settings.gzip:
            body = gzip.compress(body, compresslevel=1)
            headers.append(('Content-Encoding', 'gzip'))
        headers.append(('Content-Length', str(len(body))))
        self._counters.requests += 1
        connection: _Connection | None = None
        try:
            with anyio.fail_after(settings.request_timeout):
                connection = await self._connection(endpoint)
                answer = await self._exchange(
                    connection, target, headers, body, size, lines
                )
        except TimeoutError:
            self._counters.failed_requests += 1
            raise RetryError(
                f'timed out after {settings.request_timeout} s'
            ) from None
        except _FailureError as error:
            self._counters.failed_requests += 1
            if error.kind == 'ConnectError':
                self.connect_failures += 1
            # An error about a header may quote the credentials: never
            # shown.
            raise RetryError(settings.redact(str(error))) from None
        finally:
            if connection is not None:
                self._release(connection)
        return answer

    def _release(self, connection: _Connection) -> None:
        """Keep a connection for the next request, or close it."""
        self._busy.discard(connection)
        protocol = connection.protocol
        if (
            connection.endpoint is self._endpoint
            and protocol.our_state is h11.DONE
            and protocol.their_state is h11.DONE
            and connection.usable()
        ):
            protocol.start_next_cycle()
            self._idle.append(connection)
        else:
            connection.close()

    async def _connection(self, endpoint: _Endpoint) -> _Connection:
        """A free connection to *endpoint*, opened if none is."""
        while self._idle:
            connection = self._idle.pop()
            if connection.usable():
                self._busy.add(connection)
                return connection
            connection.close()
        try:
            reader, writer = await asyncio.open_connection(
                endpoint.host,
                endpoint.port,
                ssl=endpoint.tls,
                server_hostname=endpoint.host if endpoint.tls else None,
                limit=_CHUNK,
            )
        except (OSError, ssl.SSLError) as error:
            raise _FailureError('ConnectError', error) from None
        except RuntimeError as error:
            # At interpreter exit, new threads (host name resolution) can
            # no longer start: a connection failure like any other.
            raise _FailureError('ConnectError', error) from None
        connection = _Connection(endpoint, reader, writer)
        self._busy.add(connection)
        return connection

    async def _exchange(
        self,
        connection: _Connection,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        size: int,
        lines: int,
    ) -> Answer:
        """Send the request and read the answer, a bounded prefix of it."""
        protocol = connection.protocol
        writer = connection.writer
        try:
            head = protocol.send(
                h11.Request(method='POST', target=target, headers=headers)
            )
            chunks = protocol.send_with_data_passthrough(h11.Data(data=body))
            tail = protocol.send(h11.EndOfMessage())
        except (h11.LocalProtocolError, UnicodeError) as error:
            raise _FailureError('LocalProtocolError', error) from None
        try:
            assert head is not None
            assert tail is not None
            writer.write(head)
            # Piece by piece: writelines() would join them into a copy.
            for chunk in chunks or ():
                writer.write(chunk)
            if tail:
                writer.write(tail)
            await writer.drain()
        except (OSError, ssl.SSLError):
            # The server may have answered before taking the whole body
            # (a 413, say) and closed: its answer is read all the same.
            pass
        return await self._answer(connection, size, lines)

    async def _answer(
        self, connection: _Connection, size: int, lines: int
    ) -> Answer:
        protocol = connection.protocol
        reader = connection.reader
        response: h11.Response | None = None
        limit = _READ_LIMIT
        body: list[bytes] = []
        read = 0
        try:
            while True:
                event = protocol.next_event()
                if event is h11.NEED_DATA:
                    protocol.receive_data(await reader.read(_CHUNK))
                elif isinstance(event, h11.Response):
                    response = event
                    if event.status_code == 400:
                        limit += _READ_PER_BYTE * size + _READ_PER_LINE * lines
                        limit = min(limit, _READ_MAX)
                elif isinstance(event, h11.Data):
                    data = bytes(event.data)
                    read += len(data)
                    if read > limit:
                        body.append(data[: len(data) - (read - limit)])
                        # Not read to its end: the connection is not
                        # used again.
                        connection.close()
                        return _make_answer(response, body, False)
                    body.append(data)
                elif isinstance(event, h11.EndOfMessage):
                    return _make_answer(response, body, True)
                elif isinstance(event, h11.ConnectionClosed):
                    raise _FailureError(
                        'RemoteProtocolError',
                        ConnectionError('Server disconnected'),
                    )
                # An informational response (1xx): the answer follows.
        except h11.RemoteProtocolError as error:
            raise _FailureError('RemoteProtocolError', error) from None
        except (OSError, ssl.SSLError) as error:
            raise _FailureError('ReadError', error) from None

    def _current(self, settings: Settings) -> _Endpoint:
        """The endpoint of these settings; a new one when they changed."""
        key = (settings.url, _tls_inputs(settings))
        endpoint = self._endpoint
        if endpoint is None or endpoint.key != key:
            tls = self._tls_context(settings)
            endpoint = _Endpoint(settings, key, tls)
            # Connections to the previous server are closed as they
            # finish; changing servers is rare.
            for connection in self._idle:
                connection.close()
            self._idle = []
            self._endpoint = endpoint
        return endpoint

    def _tls_context(self, settings: Settings) -> ssl.SSLContext | None:
        """The SSL context for these settings, built once for each change.

        Loading certificates costs tens of milliseconds: it is done only
        for an https URL, and again only when a TLS setting changes.
        ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` are read here, by
        :meth:`Settings.tls_context`; proxy variables and ``.netrc`` are
        never used.
        """
        inputs = _tls_inputs(settings)
        if not inputs:
            return None
        if self._tls is not None and self._tls[0] == inputs:
            return self._tls[1]
        try:
            context = settings.tls_context()
        except ValueError as error:
            # Nothing can be sent: kept and tried again, like a server that
            # cannot be reached.
            self.connect_failures += 1
            raise RetryError(str(error), error=True) from None
        if not settings.verify and settings.ssl_context is None:
            LOGGER.warning(
                'TLS certificate verification is off (verify=False): anyone '
                'able to intercept the connection to %s can read and change '
                'what is written',
                settings.url,
            )
        self._tls = (inputs, context)
        return context


def _make_answer(
    response: h11.Response | None, body: list[bytes], complete: bool
) -> Answer:
    if response is None:  # pragma: no cover - h11 gives the head first
        raise _FailureError('RemoteProtocolError', ValueError('no response'))
    headers = _Headers()
    for name, value in response.headers:
        key = name.decode('latin-1')
        text = value.decode('latin-1')
        previous = headers.get(key)
        headers[key] = text if previous is None else f'{previous}, {text}'
    return Answer(
        response.status_code,
        headers,
        response.reason.decode('latin-1'),
        b''.join(body),
        complete,
    )


def _describe(error: BaseException) -> str:
    """The error's type and the first message found along its chain.

    httpx can raise an error without a message (``ReadError``) for a TLS
    alert, whose text, naming the problem, is that of its cause.
    """
    cause: BaseException | None = error
    seen = set()
    while cause is not None and not str(cause) and id(cause) not in seen:
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    detail = str(cause) if cause is not None else ''
    name = type(error).__name__
    return f'{name}: {detail}' if detail else name


def _tls_inputs(settings: Settings) -> tuple[object, ...]:
    """What the SSL context is made of; nothing for a plain http URL."""
    if not settings.url.startswith('https:'):
        return ()
    return (
        settings.verify,
        settings.ca_bundle,
        settings.client_cert,
        settings.client_key,
        settings.ssl_context,
    )


def retry_after(value: str | None) -> float:
    """Seconds a ``Retry-After`` header asks for (0 when absent or bad)."""
    if not value:
        return 0.0
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return 0.0
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return 0.0
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)
