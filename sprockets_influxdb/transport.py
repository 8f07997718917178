"""The HTTP side of the writer: one httpx client, TLS, bounded answers.

:class:`Transport` posts a body of lines to the server, as the write API
of the settings (:mod:`sprockets_influxdb.write_api`) says, within a
deadline for the whole exchange, and reads at most a bounded prefix of
the answer, however large or slow the server makes it.  Network trouble
is raised as :class:`RetryError`, for the writer to keep the lines and try
again.
"""

from __future__ import annotations

import email.utils
import gzip
import logging
import math
import ssl
import time
import typing

import anyio
import httpx

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


class RetryError(Exception):
    """A request must be retried later; the lines are kept."""

    def __init__(
        self, message: str, retry_after: float = 0.0, error: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.error = error


class Transport:
    """Posts bodies of lines; owns the HTTP client and the SSL context.

    :param counters: the counters of requests and failed requests
    """

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._http: httpx.AsyncClient | None = None
        self._http_settings: Settings | None = None
        # The SSL context and what it was built from.
        self._tls: tuple[tuple[object, ...], ssl.SSLContext] | None = None
        self._retired: list[httpx.AsyncClient] = []
        #: Connections that failed (refused, no route, no certificate).
        self.connect_failures = 0

    async def aclose(self) -> None:
        """Close every HTTP client, the retired ones too."""
        for client in [*self._retired, self._http]:
            if client is not None:
                await client.aclose()
        self._http = None
        self._retired = []

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
        http = self._client(settings)
        api = by_name(settings.api)
        params = api.params(settings, database, precision)
        # The body is read as sent, never inflated.
        headers = {
            'Content-Type': 'text/plain; charset=utf-8',
            'Accept': 'application/json',
            'Accept-Encoding': 'identity',
            **api.headers(settings),
        }
        size = len(body)
        if settings.gzip:
            body = gzip.compress(body, compresslevel=1)
            headers['Content-Encoding'] = 'gzip'
        self._counters.requests += 1
        try:
            with anyio.fail_after(settings.request_timeout):
                async with http.stream(
                    'POST',
                    settings.url,
                    params=params,
                    content=body,
                    headers=headers,
                ) as response:
                    limit = _READ_LIMIT
                    if response.status_code == 400:
                        limit += _READ_PER_BYTE * size + _READ_PER_LINE * lines
                        limit = min(limit, _READ_MAX)
                    data, complete = await _read_body(response, limit)
        except (TimeoutError, httpx.TimeoutException) as error:
            self._counters.failed_requests += 1
            raise RetryError(
                f'timed out after {settings.request_timeout} s '
                f'({type(error).__name__})'
            ) from None
        except httpx.ConnectError as error:
            self._counters.failed_requests += 1
            self.connect_failures += 1
            raise RetryError(settings.redact(_describe(error))) from None
        except (httpx.HTTPError, ssl.SSLError, UnicodeError) as error:
            # A TLS alert after the handshake (a client certificate the
            # server refused) can come through httpx unwrapped.  An error
            # about a header may quote the credentials: never shown.
            self._counters.failed_requests += 1
            raise RetryError(settings.redact(_describe(error))) from None
        except RuntimeError as error:
            # At interpreter exit, new threads (host name resolution) can
            # no longer start: a connection failure like any other.
            self._counters.failed_requests += 1
            self.connect_failures += 1
            raise RetryError(f'cannot connect now: {error}') from None
        return Answer(
            response.status_code,
            response.headers,
            response.reason_phrase,
            data,
            complete,
        )

    def _client(self, settings: Settings) -> httpx.AsyncClient:
        current = self._http
        previous = self._http_settings
        if (
            current is None
            or previous is None
            or previous.url != settings.url
            or previous.request_timeout != settings.request_timeout
            or previous.max_clients != settings.max_clients
            or _tls_inputs(previous) != _tls_inputs(settings)
        ):
            verify = self._tls_context(settings)
            if current is not None:
                # Requests still using the old client finish with it; it is
                # closed when the writer stops.  Changing servers is rare.
                self._retired.append(current)
            # Authorization is a header of each request, from the API.
            current = httpx.AsyncClient(
                verify=verify,
                timeout=settings.request_timeout,
                headers={'User-Agent': USER_AGENT},
                limits=httpx.Limits(
                    max_connections=settings.max_clients,
                    max_keepalive_connections=settings.max_clients,
                ),
                trust_env=False,
            )
            self._http = current
            self._http_settings = settings
        return current

    def _tls_context(self, settings: Settings) -> ssl.SSLContext | bool:
        """The SSL context for these settings, built once for each change.

        Loading certificates costs tens of milliseconds: it is done only
        for an https URL, and again only when a TLS setting changes.
        ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` are read here, by
        :meth:`Settings.tls_context`, not by httpx: its ``trust_env`` stays
        off, so that proxy variables and ``.netrc`` are never used.
        """
        inputs = _tls_inputs(settings)
        if not inputs:
            return False
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


async def _read_body(
    response: httpx.Response, limit: int
) -> tuple[bytes, bool]:
    """Read at most *limit* bytes of a body, as sent.

    :returns: the bytes, and whether they are the whole body
    """
    chunks = []
    size = 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > limit:
            chunks.append(chunk[: len(chunk) - (size - limit)])
            return b''.join(chunks), False
        chunks.append(chunk)
    return b''.join(chunks), True


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
