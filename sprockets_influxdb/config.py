"""Typed settings, read from arguments and the environment, validated once.

Every option can be given as an argument or through an environment
variable; the argument wins.  An explicit ``0`` (or ``False``) argument is a
value, not "unset": only ``None`` means "use the environment, else the
default".  A malformed value raises :class:`ValueError` naming the argument
or the variable.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import math
import os
import socket
import ssl
import urllib.parse
from collections.abc import Mapping
from typing import Any, Callable, TypeVar

from sprockets_influxdb import line_protocol
from sprockets_influxdb.write_api import APIS, by_name, split_path

__all__ = ['ALSO_READ', 'ENVIRONMENT_VARIABLES', 'Settings', 'parse_bool']

LOGGER = logging.getLogger('sprockets_influxdb')

_T = TypeVar('_T')

_TRUE = frozenset({'true', '1', 'yes', 'on', 't', 'y'})
_FALSE = frozenset({'false', '0', 'no', 'off', 'f', 'n'})

#: Environment variable for each setting, as documented in the
#: configuration table.
ENVIRONMENT_VARIABLES: Mapping[str, str] = {
    'enabled': 'INFLUXDB_ENABLED',
    'url': 'INFLUXDB_URL',
    'username': 'INFLUXDB_USER',
    'password': 'INFLUXDB_PASSWORD',
    'submission_interval': 'INFLUXDB_INTERVAL',
    'max_batch_size': 'INFLUXDB_MAX_BATCH_SIZE',
    'max_clients': 'INFLUXDB_MAX_CLIENTS',
    'max_buffer_size': 'INFLUXDB_MAX_BUFFER_SIZE',
    'trigger_size': 'INFLUXDB_TRIGGER_SIZE',
    'sample_probability': 'INFLUXDB_SAMPLE_PROBABILITY',
    'precision': 'INFLUXDB_PRECISION',
    'request_timeout': 'INFLUXDB_REQUEST_TIMEOUT',
    'flush_timeout': 'INFLUXDB_FLUSH_TIMEOUT',
    'shutdown_timeout': 'INFLUXDB_SHUTDOWN_TIMEOUT',
    'gzip': 'INFLUXDB_GZIP',
    'max_body_size': 'INFLUXDB_MAX_BODY_SIZE',
    'retention_policy': 'INFLUXDB_RETENTION_POLICY',
    'unique_timestamps': 'INFLUXDB_UNIQUE_TIMESTAMPS',
    'tag_hostname': 'INFLUXDB_TAG_HOSTNAME',
    'environment': 'ENVIRONMENT',
    'verify': 'INFLUXDB_VERIFY_SSL',
    'ca_bundle': 'INFLUXDB_CA_BUNDLE',
    'client_cert': 'INFLUXDB_CLIENT_CERT',
    'client_key': 'INFLUXDB_CLIENT_KEY',
    'api': 'INFLUXDB_API',
    'token': 'INFLUXDB_TOKEN',
    'org': 'INFLUXDB_ORG',
    'bucket': 'INFLUXDB_BUCKET',
    'accept_partial': 'INFLUXDB_ACCEPT_PARTIAL',
    'no_sync': 'INFLUXDB_NO_SYNC',
}

#: Other tools' variables, read when ours are not set: a service configured
#: for ``influxdb-client`` (InfluxDB 2.x, ``INFLUXDB_V2_*``) or for
#: InfluxDB 3's ``influxdb3`` command (``INFLUXDB3_*``) works unchanged.
ALSO_READ: Mapping[str, tuple[str, ...]] = {
    'url': ('INFLUXDB_V2_URL', 'INFLUXDB3_HOST_URL'),
    'token': ('INFLUXDB_V2_TOKEN', 'INFLUXDB3_AUTH_TOKEN'),
    'org': ('INFLUXDB_V2_ORG',),
    'bucket': ('INFLUXDB_V2_BUCKET', 'INFLUXDB3_DATABASE_NAME'),
}

_PEM_CERTIFICATE = b'-----BEGIN CERTIFICATE-----'
_PEM_KEY = b'PRIVATE KEY-----'


def parse_bool(text: str, name: str) -> bool:
    """Parse a boolean the way every variable of this library is parsed.

    :param text: ``true``/``false``, ``1``/``0``, ``yes``/``no`` or
        ``on``/``off``, in any case
    :param name: what to name in the error message
    :returns: the boolean
    :raises ValueError: for anything else
    """
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f'{name}={text!r} is not a boolean '
        '(use true/false, 1/0, yes/no or on/off)'
    )


def _integer(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ValueError(
                    f'{name}={value!r} is not an integer'
                ) from None
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise TypeError(f'{name} must be an integer, not {value!r}')
    assert isinstance(value, int)
    if value < minimum:
        raise ValueError(f'{name} must be at least {minimum}, not {value}')
    return value


def _number(
    value: object, name: str, minimum: float, maximum: float = math.inf
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f'{name} must be a number, not {value!r}')
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f'{name}={value!r} is not a number') from None
    if not minimum <= number <= maximum or math.isnan(number):
        bound = '' if maximum == math.inf else f' and at most {maximum}'
        raise ValueError(
            f'{name} must be at least {minimum}{bound}, not {value!r}'
        )
    return number


def _boolean(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return parse_bool(value, name)
    raise TypeError(f'{name} must be a bool, not {value!r}')


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f'{name} must be a str, not {value!r}')
    return value


def _secret(value: object, name: str) -> str:
    """A string that may hold a credential: errors show only its type."""
    if not isinstance(value, str):
        raise TypeError(f'{name} must be a str, not {type(value).__name__}')
    return value


def _token(value: object, name: str) -> str | None:
    """An API token: surrounding spaces dropped, only header characters.

    Errors name the setting, never the token.
    """
    text = _secret(value, name).strip()
    if not text:
        return None
    if not all(' ' < character < '\x7f' for character in text):
        raise ValueError(
            f'{name} holds a character that cannot be sent in an HTTP '
            'header (a space, a control or a non-ASCII character)'
        )
    return text


def _verify(value: object, name: str) -> bool:
    try:
        return _boolean(value, name)
    except ValueError as error:
        raise ValueError(
            f'{error}; give a CA certificate file as ca_bundle'
        ) from None


def _path(value: object, name: str) -> str:
    if isinstance(value, str):
        path = value.strip()
    elif isinstance(value, os.PathLike):
        path = os.fspath(value)
    else:
        raise TypeError(f'{name} must be a path (a str), not {value!r}')
    if not isinstance(path, str):
        raise TypeError(f'{name} must be a path (a str), not {value!r}')
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        raise ValueError(f'{name} {path!r} does not exist')
    return path


def _pem(path: str, name: str, marker: bytes, what: str) -> bytes:
    if not os.path.isfile(path):
        raise ValueError(f'{name} {path!r} is not a file')
    try:
        with open(path, 'rb') as file:
            content = file.read()
    except OSError as error:
        raise ValueError(
            f'{name} {path!r} cannot be read: {error.strerror}'
        ) from None
    if marker not in content:
        raise ValueError(f'{name} {path!r} holds no {what} in PEM format')
    return content


def _ca_bundle(value: object, name: str) -> str:
    path = _path(value, name)
    if not os.path.isdir(path):
        _pem(path, name, _PEM_CERTIFICATE, 'certificate')
    return path


def _client_cert(value: object, name: str) -> str:
    path = _path(value, name)
    _pem(path, name, _PEM_CERTIFICATE, 'certificate')
    return path


def _client_key(value: object, name: str) -> str:
    path = _path(value, name)
    if b'ENCRYPTED' in _pem(path, name, _PEM_KEY, 'private key'):
        raise ValueError(
            f'{name} {path!r} holds an encrypted key: load it into an '
            'ssl.SSLContext (load_cert_chain with its password) and give '
            'that as ssl_context'
        )
    return path


def _ssl_context(value: object, name: str) -> ssl.SSLContext:
    if not isinstance(value, ssl.SSLContext):
        raise TypeError(
            f'{name} must be an ssl.SSLContext, not {type(value).__name__}'
        )
    return value


def redact_url(text: str) -> str:
    """Return *text*, a URL or what should be one, without a password.

    Everything between the start of the authority and the last ``@`` is
    replaced by ``***``: a password with an unencoded ``/``, ``?`` or
    ``#`` spreads beyond what a URL parser reads as the userinfo, so the
    text is cut, not parsed.  A port that is not a port number may be a
    password written without ``@host`` (``http://user:password/``):
    everything after the host's ``:`` is replaced by ``***`` too.

    :param text: the URL as given
    :returns: a text fit for an error message or a log line
    """
    start = text.find('://')
    start = 0 if start < 0 else start + 3
    at = text.rfind('@')
    if at >= start:
        text = f'{text[:start]}***{text[at:]}'
        start += len('***@')
    end = len(text)
    for separator in '/?#':
        found = text.find(separator, start)
        if 0 <= found < end:
            end = found
    host = text[start:end]
    colon = host.find(':', host.find(']') + 1 if host.startswith('[') else 0)
    port = host[colon + 1 :]
    if (
        colon < 0
        or (host.startswith('[') and ']' not in host)
        or port == ''
        or (port.isascii() and port.isdigit() and int(port) < 65536)
    ):
        return text
    return f'{text[: start + colon + 1]}***'


def normalize_url(
    url: object, name: str = 'url'
) -> tuple[str, str | None, str, str]:
    """Split a URL into the server's URL, the write API it names, credentials.

    ``http://host:8086``, ``http://host:8086/`` and
    ``http://host:8086/write`` all give the server ``http://host:8086``;
    the last one also names the 1.x write API (``/api/v2/write`` names
    v2, ``/api/v3/write_lp`` v3).  A path prefix (a proxy,
    VictoriaMetrics' ``/insert/0/influx``) is kept.  Credentials written
    in the URL are taken out of it, so that the URL can be logged.

    :param url: an ``http`` or ``https`` URL
    :param name: what to name in error messages
    :returns: ``(server_url, api, username, password)``: *api* is
        ``None`` when the path names none, the last two are empty when the
        URL holds none
    :raises ValueError: for another scheme, a missing host or a query
        string; the message never shows the credentials
    :raises TypeError: when it is not a string
    """
    text = _secret(url, name).strip()
    shown = redact_url(text)
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        raise ValueError(f'{name} {shown!r} is not a valid URL') from None
    if parts.scheme not in ('http', 'https'):
        raise ValueError(
            f'{name} {shown!r} must start with http:// or https://'
        )
    if not parts.hostname:
        raise ValueError(f'{name} {shown!r} has no host')
    if '@' in parts.path + parts.query + parts.fragment:
        # What the password held after a '/', '?' or '#' would be taken
        # for the path, the query or the fragment, and shown in the URL.
        raise ValueError(
            f"{name} {shown!r} has an '@' after the host: write '/', '?' "
            "and '#' in a password as %2F, %3F and %23"
        )
    if parts.query or parts.fragment:
        raise ValueError(
            f'{name} {shown!r} must not have a query string or fragment'
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f'{name} {shown!r} has an invalid port') from None
    host = parts.hostname
    if ':' in host:
        host = f'[{host}]'
    netloc = host if port is None else f'{host}:{port}'
    prefix, api = split_path(parts.path)
    username = urllib.parse.unquote(parts.username or '')
    password = urllib.parse.unquote(parts.password or '')
    return (
        urllib.parse.urlunsplit((parts.scheme, netloc, prefix, '', '')),
        api,
        username,
        password,
    )


@dataclasses.dataclass(frozen=True)
class Settings:
    """The complete, validated configuration of a :class:`~.Client`.

    Build one with :meth:`resolve`; the attributes are read only.  The
    password never appears in the ``repr``.
    """

    enabled: bool = True
    url: str = 'http://localhost:8086/write'
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    submission_interval: int = 60000
    max_batch_size: int = 10000
    max_clients: int = 10
    max_buffer_size: int = 25000
    trigger_size: int = 5000
    sample_probability: float = 1.0
    base_tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    precision: str = 'n'
    request_timeout: float = 10.0
    flush_timeout: float = 30.0
    shutdown_timeout: float = 5.0
    gzip: bool = False
    max_body_size: int = 25_000_000
    retention_policy: str | None = None
    unique_timestamps: bool = True
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    verify: bool = True
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    ssl_context: ssl.SSLContext | None = None
    api: str = 'v1'
    token: str | None = dataclasses.field(default=None, repr=False)
    org: str | None = None
    bucket: str | None = None
    accept_partial: bool = True
    no_sync: bool = False

    def redact(self, text: str) -> str:
        """*text* with the token and the password replaced by ``***``.

        For messages that may quote a request's headers (an HTTP library's
        error about an invalid header, say).
        """
        for secret in (self.token, self.password):
            if secret:
                text = text.replace(secret, '***')
        if self.username is not None or self.password is not None:
            pair = f'{self.username or ""}:{self.password or ""}'
            basic = base64.b64encode(pair.encode('utf-8')).decode('ascii')
            text = text.replace(basic, '***')
        return text

    @property
    def server_url(self) -> str:
        """The server's URL: :attr:`url` without its write endpoint."""
        parts = urllib.parse.urlsplit(self.url)
        prefix, _ = split_path(parts.path)
        return urllib.parse.urlunsplit(
            (parts.scheme, parts.netloc, prefix, '', '')
        )

    @classmethod
    def resolve(
        cls,
        environ: Mapping[str, str] | None = None,
        **arguments: Any,
    ) -> Settings:
        """Combine arguments, the environment and the defaults.

        :param environ: the environment to read (default :data:`os.environ`)
        :param arguments: settings given explicitly; ``None`` means unset
        :returns: the validated settings
        :raises ValueError: naming the argument or variable that is wrong
        :raises TypeError: for an argument of the wrong type
        """
        env = os.environ if environ is None else environ
        unknown = (
            set(arguments)
            - {field.name for field in dataclasses.fields(cls)}
            - {'tag_hostname', 'environment', 'cert'}
        )
        if unknown:
            raise TypeError(f'unknown settings: {", ".join(sorted(unknown))}')
        _split_cert(arguments)

        # Where each setting came from: the argument or the variable.
        origins: dict[str, str] = {}

        def pick(
            name: str, convert: Callable[[object, str], _T], default: _T
        ) -> _T:
            value = arguments.get(name)
            if value is not None:
                origins[name] = name
                return convert(value, name)
            variables = (
                ENVIRONMENT_VARIABLES.get(name),
                *ALSO_READ.get(name, ()),
            )
            for variable in variables:
                if variable is None:
                    continue
                text = env.get(variable)
                if text is not None and text.strip() != '':
                    origins[name] = variable
                    return convert(text, variable)
            return default

        def integer(minimum: int) -> Callable[[object, str], int]:
            return lambda value, name: _integer(value, name, minimum)

        def number(
            minimum: float, maximum: float = math.inf
        ) -> Callable[[object, str], float]:
            return lambda value, name: _number(value, name, minimum, maximum)

        (server, named, url_user, url_password), origins['url'] = (
            cls._resolve_url(arguments, env)
        )
        token = pick('token', _token, None)
        bucket = pick('bucket', _text, None)
        api = _choose_api(pick('api', _api, 'auto'), named, token, origins)
        url = server + by_name(api).path
        precision = pick('precision', _precision, 'n')
        precisions = by_name(api).precisions
        if precision not in precisions:
            raise ValueError(
                f'{origins.get("precision", "precision")} {precision!r} '
                'is not a precision '
                f'of the {api} write API: use one of {", ".join(precisions)}'
            )
        username = pick('username', _secret, url_user or None)
        password = pick('password', _secret, url_password or None)
        retention_policy = pick('retention_policy', _text, None)
        tag_hostname = pick('tag_hostname', _boolean, True)
        environment = pick('environment', _text, None)
        base_tags = _base_tags(
            arguments.get('base_tags'), tag_hostname, environment
        )
        # SSL_CERT_FILE and SSL_CERT_DIR are OpenSSL's, not ours: read,
        # leniently, only when an https context is built (tls_context).
        ca_bundle = pick('ca_bundle', _ca_bundle, None)
        client_cert = pick('client_cert', _client_cert, None)
        client_key = pick('client_key', _client_key, None)
        if client_key is not None and client_cert is None:
            raise ValueError(
                'client_key is set without client_cert '
                '(INFLUXDB_CLIENT_CERT): give the certificate too'
            )
        if client_cert is not None and client_key is None:
            # One file holding both, as in ``cert='client.pem'``.
            _client_key(client_cert, 'client_cert (without client_key)')
        if client_cert is not None and url.startswith('https:'):
            _check_pair(
                client_cert,
                client_key,
                *(
                    name
                    if arguments.get(name) is not None
                    else ENVIRONMENT_VARIABLES[name]
                    for name in ('client_cert', 'client_key')
                ),
            )
        settings = cls(
            enabled=pick('enabled', _boolean, True),
            url=url,
            username=username,
            password=password,
            submission_interval=pick('submission_interval', integer(0), 60000),
            max_batch_size=pick('max_batch_size', integer(1), 10000),
            max_clients=pick('max_clients', integer(1), 10),
            max_buffer_size=pick('max_buffer_size', integer(1), 25000),
            trigger_size=pick('trigger_size', integer(1), 5000),
            sample_probability=pick('sample_probability', number(0, 1), 1.0),
            base_tags=base_tags,
            precision=precision,
            request_timeout=pick('request_timeout', number(0.001), 10.0),
            flush_timeout=pick('flush_timeout', number(0), 30.0),
            shutdown_timeout=pick('shutdown_timeout', number(0), 5.0),
            gzip=pick('gzip', _boolean, False),
            max_body_size=pick('max_body_size', integer(1024), 25_000_000),
            retention_policy=retention_policy,
            unique_timestamps=pick('unique_timestamps', _boolean, True),
            backoff_base=pick('backoff_base', number(0.001), 0.5),
            backoff_max=pick('backoff_max', number(0.001), 30.0),
            verify=pick('verify', _verify, True),
            ca_bundle=ca_bundle,
            client_cert=client_cert,
            client_key=client_key,
            ssl_context=pick('ssl_context', _ssl_context, None),
            api=api,
            token=token,
            org=pick('org', _text, None),
            bucket=bucket,
            accept_partial=pick('accept_partial', _boolean, True),
            no_sync=pick('no_sync', _boolean, False),
        )
        return settings

    @staticmethod
    def _resolve_url(
        arguments: Mapping[str, Any], env: Mapping[str, str]
    ) -> tuple[tuple[str, str | None, str, str], str]:
        """The server's URL, as :func:`normalize_url` splits it.

        :returns: that, and where it came from (the setting or variable)
        """
        url = arguments.get('url')
        if url is not None:
            return normalize_url(url, 'url'), 'url'
        text = env.get('INFLUXDB_URL', '').strip()
        if text:
            return normalize_url(text, 'INFLUXDB_URL'), 'INFLUXDB_URL'
        ours = ('INFLUXDB_SCHEME', 'INFLUXDB_HOST', 'INFLUXDB_PORT')
        if not any(env.get(variable, '').strip() for variable in ours):
            for variable in ALSO_READ['url']:
                text = env.get(variable, '').strip()
                if text:
                    return normalize_url(text, variable), variable
        scheme = env.get('INFLUXDB_SCHEME', '').strip() or 'http'
        host = env.get('INFLUXDB_HOST', '').strip() or 'localhost'
        port = env.get('INFLUXDB_PORT', '').strip() or '8086'
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f'INFLUXDB_PORT={port!r} is not a port number')
        if ':' in host and not host.startswith('['):
            host = f'[{host}]'
        where = 'INFLUXDB_SCHEME/INFLUXDB_HOST/INFLUXDB_PORT'
        return normalize_url(f'{scheme}://{host}:{port}', where), where

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with some settings changed and validated again.

        ``base_tags`` replaces every base tag, including ``hostname`` and
        ``environment``, which are only read from the environment when the
        settings are first resolved.

        :param changes: settings to change, by attribute name
        :returns: the new settings
        :raises ValueError: when a new value is invalid
        :raises TypeError: when a new value has the wrong type, or for
            ``tag_hostname`` and ``environment``
        """
        for name in ('tag_hostname', 'environment'):
            if name in changes:
                raise TypeError(
                    f'{name} applies when settings are first resolved; '
                    'change the tags with base_tags instead'
                )
        # Not dataclasses.asdict(): it would copy the SSL context, which
        # cannot be copied.
        current = dict(vars(self))
        if changes.get('cert') is not None:
            current.pop('client_cert')
            current.pop('client_key')
        # A new URL naming a write API chooses it; one that names none
        # keeps the API in use.
        if (
            changes.get('url') is not None
            and 'api' not in changes
            and normalize_url(changes['url'])[1] is not None
        ):
            current['api'] = 'auto'
        current.update(changes)
        current['tag_hostname'] = False
        return Settings.resolve(environ={}, **current)

    def tls_context(self) -> ssl.SSLContext:
        """Build the SSL context that HTTPS connections use.

        :attr:`ssl_context` when given; else a context that verifies the
        server against :attr:`ca_bundle`, or does not verify it at all when
        :attr:`verify` is false, presenting :attr:`client_cert` when set.
        Without :attr:`ca_bundle`, the CAs that ``SSL_CERT_FILE`` and every
        directory of ``SSL_CERT_DIR`` name are trusted, read now; one that
        cannot be used is named in a warning and left out, and without any
        the certificates of ``certifi`` are trusted, as httpx does.
        Loading certificates takes tens of milliseconds: build it once.

        :returns: the context
        :raises ValueError: naming the setting whose file cannot be loaded
        """
        if self.ssl_context is not None:
            return self.ssl_context
        bundle = self.ca_bundle
        try:
            if not self.verify:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            elif bundle is None:
                context = _openssl_context(os.environ)
            elif os.path.isdir(bundle):
                context = ssl.create_default_context(capath=bundle)
            else:
                context = ssl.create_default_context(cafile=bundle)
        except (OSError, ssl.SSLError) as error:
            raise ValueError(
                f'ca_bundle {bundle!r} cannot be loaded: {error}'
            ) from None
        if self.client_cert is not None:
            try:
                context.load_cert_chain(
                    self.client_cert, self.client_key, password=_no_password
                )
            except (OSError, ssl.SSLError, ValueError) as error:
                raise ValueError(
                    f'client_cert {self.client_cert!r} cannot be loaded '
                    f'with client_key {self.client_key!r}: {error}'
                ) from None
        return context


def _api(value: object, name: str) -> str:
    text = _text(value, name).strip().lower()
    if text not in APIS:
        raise ValueError(
            f'{name} must be one of {", ".join(APIS)}, not {text!r}'
        )
    return text


def _choose_api(
    requested: str,
    named: str | None,
    token: str | None,
    origins: Mapping[str, str],
) -> str:
    """The write API to use: ``v1``, ``v2`` or ``v3``.

    ``auto`` is the API the URL's path names; else v3 when the URL or the
    token came from InfluxDB 3's variables (``INFLUXDB3_*``), v2 when a
    token is given, v1 otherwise.
    """
    if requested != 'auto':
        return requested
    if named is not None:
        return named
    if any(
        origins.get(name, '').startswith('INFLUXDB3_')
        for name in ('url', 'token')
    ):
        return 'v3'
    return 'v2' if token is not None else 'v1'


def _openssl_context(environ: Mapping[str, str]) -> ssl.SSLContext:
    """A context trusting what OpenSSL's variables name, else certifi."""
    context: ssl.SSLContext | None = None
    cafile = environ.get('SSL_CERT_FILE', '').strip()
    if cafile:
        try:
            context = ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as error:
            LOGGER.warning('SSL_CERT_FILE %r is ignored: %s', cafile, error)
    missing = []
    for capath in environ.get('SSL_CERT_DIR', '').split(os.pathsep):
        capath = capath.strip()
        if not capath:
            continue
        if not os.path.isdir(capath):
            missing.append(capath)
        elif context is None:
            context = ssl.create_default_context(capath=capath)
        else:
            context.load_verify_locations(capath=capath)
    if missing:
        LOGGER.warning(
            'SSL_CERT_DIR names %s, which %s: %s ignored',
            ', '.join(repr(path) for path in missing),
            'is not a directory'
            if len(missing) == 1
            else 'are not directories',
            'it is' if len(missing) == 1 else 'they are',
        )
    if context is None:
        # Imported here: httpx (and what it imports, click and pygments
        # among them when installed) serves only this, and only over HTTPS.
        import httpx

        context = httpx.create_ssl_context(verify=True, trust_env=False)
    return context


def _check_pair(
    cert: str, key: str | None, cert_name: str, key_name: str
) -> None:
    """Refuse a certificate and a key that do not make a pair.

    A bare context: no CA is loaded, so that it costs about a millisecond.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except (OSError, ssl.SSLError, ValueError) as error:
        if key is None:
            raise ValueError(
                f'{cert_name} {cert!r} (without client_key) holds a key '
                f'that does not go with its certificate: {error}'
            ) from None
        raise ValueError(
            f'{cert_name} {cert!r} and {key_name} {key!r} do not go '
            f'together: {error}'
        ) from None


def _no_password() -> str:
    # Without it, OpenSSL would ask for the password on the terminal.
    raise ValueError('the private key is encrypted')


def _split_cert(arguments: dict[str, Any]) -> None:
    """Turn ``cert``, as httpx and requests take it, into two settings."""
    cert = arguments.pop('cert', None)
    if cert is None:
        return
    if (
        arguments.get('client_cert') is not None
        or arguments.get('client_key') is not None
    ):
        raise TypeError('give cert or client_cert and client_key, not both')
    if isinstance(cert, tuple):
        if len(cert) != 2:
            raise TypeError(
                'cert must be a path or a (certificate, key) pair of paths'
            )
        arguments['client_cert'], arguments['client_key'] = cert
    else:
        arguments['client_cert'] = cert


def _precision(value: object, name: str) -> str:
    try:
        return line_protocol.normalize_precision(_text(value, name))
    except ValueError as error:
        raise ValueError(f'{name}: {error}') from None


def _base_tags(
    given: object, tag_hostname: bool, environment: str | None
) -> dict[str, str]:
    tags: dict[str, str] = {}
    if tag_hostname:
        tags['hostname'] = socket.gethostname()
    if environment:
        tags['environment'] = environment
    if given is None:
        return tags
    if not isinstance(given, Mapping):
        raise TypeError(f'base_tags must be a mapping, not {given!r}')
    for key, value in given.items():
        if value is None or value == '':
            tags.pop(key, None)
            continue
        text = value if isinstance(value, str) else str(value)
        try:
            line_protocol.escape_tag_key(key)
            line_protocol.escape_tag_value(text)
        except ValueError as error:
            raise ValueError(f'base_tags: {error}') from None
        tags[key] = text
    return tags
