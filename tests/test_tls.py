"""HTTPS: private CAs, client certificates, SSL contexts, no verification.

The certificates are made for each test session with the ``openssl``
command; the server is a real ``influxd`` serving HTTPS on loopback,
except for client certificates, which InfluxDB 1.x does not check: a small
HTTPS server on loopback requires one and records it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import logging
import os
import pathlib
import shutil
import socket
import ssl
import subprocess
import threading
import typing

import pytest

from sprockets_influxdb import Client, Measurement, Settings
from tests.docs import code_blocks
from tests.helpers import run_script
from tests.servers import InfluxServer

Factory = typing.Callable[..., Client]

# A password that no log line or counter may show.
SECRET = 'S3cr3tPw-tls9'

SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

CLIENT_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclasses.dataclass(frozen=True)
class PKI:
    """Certificate files, in PEM unless named otherwise."""

    ca: str
    ca_key: str
    ca_directory: str
    ca_der: str
    other_ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    client_combined: str
    client_key_encrypted: str


def openssl(*arguments: str) -> str:
    openssl = shutil.which('openssl')
    if openssl is None:
        pytest.fail('the openssl command is needed: apt-get install openssl')
    result = subprocess.run(
        [openssl, *arguments],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def make_ca(directory: str, name: str) -> tuple[str, str]:
    cert = os.path.join(directory, f'{name}.pem')
    key = os.path.join(directory, f'{name}.key')
    openssl(
        'req', '-x509', '-newkey', 'ec',
        '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
        '-keyout', key, '-out', cert, '-days', '2',
        '-subj', f'/CN=sprockets {name}',
        '-addext', 'basicConstraints=critical,CA:TRUE',
        '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
        '-addext', 'subjectKeyIdentifier=hash',
    )  # fmt: skip
    return cert, key


def make_leaf(
    directory: str,
    name: str,
    extensions: str,
    ca: tuple[str, str],
    serial: int,
) -> tuple[str, str]:
    cert = os.path.join(directory, f'{name}.pem')
    key = os.path.join(directory, f'{name}.key')
    request = os.path.join(directory, f'{name}.csr')
    config = os.path.join(directory, f'{name}.ext')
    with open(config, 'w', encoding='ascii') as file:
        file.write(extensions)
    openssl(
        'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
        '-nodes', '-keyout', key, '-out', request,
        '-subj', f'/CN=sprockets {name}',
    )  # fmt: skip
    openssl(
        'x509', '-req', '-in', request, '-CA', ca[0], '-CAkey', ca[1],
        '-set_serial', str(serial), '-days', '2', '-out', cert,
        '-extfile', config,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope='session')
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = str(tmp_path_factory.mktemp('pki'))
    ca = make_ca(directory, 'ca')
    other_ca, _ = make_ca(directory, 'other-ca')
    server = make_leaf(directory, 'server', SERVER_EXTENSIONS, ca, 2)
    client = make_leaf(directory, 'client', CLIENT_EXTENSIONS, ca, 3)
    combined = os.path.join(directory, 'client-combined.pem')
    with open(combined, 'w', encoding='ascii') as file:
        for path in client:
            with open(path, encoding='ascii') as part:
                file.write(part.read())
    encrypted = os.path.join(directory, 'client-encrypted.key')
    openssl(
        'pkey', '-in', client[1], '-aes256', '-passout', 'pass:x',
        '-out', encrypted,
    )  # fmt: skip
    der = os.path.join(directory, 'ca.der')
    openssl('x509', '-in', ca[0], '-outform', 'DER', '-out', der)
    # A directory of certificates named by their hash, for SSL_CERT_DIR.
    hashed = os.path.join(directory, 'certs')
    os.mkdir(hashed)
    name = openssl('x509', '-hash', '-noout', '-in', ca[0]).strip()
    shutil.copy(ca[0], os.path.join(hashed, f'{name}.0'))
    return PKI(
        ca=ca[0],
        ca_key=ca[1],
        ca_directory=hashed,
        ca_der=der,
        other_ca=other_ca,
        server_cert=server[0],
        server_key=server[1],
        client_cert=client[0],
        client_key=client[1],
        client_combined=combined,
        client_key_encrypted=encrypted,
    )


@pytest.fixture(autouse=True)
def no_tls_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in (
        'INFLUXDB_VERIFY_SSL',
        'INFLUXDB_CA_BUNDLE',
        'INFLUXDB_CLIENT_CERT',
        'INFLUXDB_CLIENT_KEY',
        'SSL_CERT_FILE',
        'SSL_CERT_DIR',
    ):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def tls_influxdb(
    influxdb_factory: typing.Callable[..., InfluxServer], pki: PKI
) -> InfluxServer:
    server = influxdb_factory(
        https_certificate=pki.server_cert,
        https_private_key=pki.server_key,
        https_ca=pki.ca,
    )
    server.create_database('db')
    return server


@pytest.fixture
def client_factory() -> typing.Iterator[Factory]:
    clients: list[Client] = []

    def factory(url: str, **settings: typing.Any) -> Client:
        settings.setdefault('tag_hostname', False)
        settings.setdefault('backoff_base', 0.01)
        settings.setdefault('backoff_max', 0.05)
        client = Client(url, **settings)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.shutdown(timeout=1).result(timeout=10)


def point(index: int = 0) -> Measurement:
    measurement = Measurement('db', 'm')
    measurement.set_field('i', index)
    return measurement


def deliver(client: Client, count: int = 1) -> bool:
    for index in range(count):
        client.add_measurement(point(index))
    result: bool = client.flush(timeout=10).result(timeout=20)
    return result


# -- a private CA -----------------------------------------------------------


@pytest.mark.parametrize(
    'given',
    [
        'ca_bundle',
        'INFLUXDB_CA_BUNDLE',
        'SSL_CERT_FILE',
        'SSL_CERT_DIR',
        'ca_bundle directory',
        'ssl_context',
    ],
)
def test_rows_arrive_through_a_private_ca(
    tls_influxdb: InfluxServer,
    client_factory: Factory,
    pki: PKI,
    monkeypatch: pytest.MonkeyPatch,
    given: str,
) -> None:
    settings: dict[str, object] = {}
    if given == 'ca_bundle':
        settings['ca_bundle'] = pki.ca
    elif given == 'ca_bundle directory':
        settings['ca_bundle'] = pki.ca_directory
    elif given == 'ssl_context':
        settings['ssl_context'] = ssl.create_default_context(cafile=pki.ca)
    elif given == 'SSL_CERT_DIR':
        monkeypatch.setenv(given, pki.ca_directory)
    else:
        monkeypatch.setenv(given, pki.ca)
    client = client_factory(tls_influxdb.url, **settings)
    assert deliver(client, 3) is True
    assert tls_influxdb.count('db', 'm') == 3
    assert client.stats().failed_requests == 0


def hashed_directory(directory: str, *certificates: str) -> str:
    """A directory of *certificates* named by their hash, as SSL_CERT_DIR
    and ``openssl rehash`` have them."""
    os.makedirs(directory)
    for certificate in certificates:
        name = openssl('x509', '-hash', '-noout', '-in', certificate)
        shutil.copy(certificate, os.path.join(directory, f'{name.strip()}.0'))
    return directory


def ssl_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == 'sprockets_influxdb'
        and record.levelname == 'WARNING'
        and 'SSL_CERT_' in record.getMessage()
    ]


@pytest.mark.parametrize('order', ['private CA first', 'private CA last'])
def test_every_directory_of_ssl_cert_dir_is_searched(
    tls_influxdb: InfluxServer,
    client_factory: Factory,
    pki: PKI,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: pathlib.Path,
    order: str,
) -> None:
    other = hashed_directory(str(tmp_path / 'other'), pki.other_ca)
    directories = [pki.ca_directory, other]
    if order == 'private CA last':
        directories.reverse()
    monkeypatch.setenv('SSL_CERT_DIR', os.pathsep.join(directories))
    assert Settings.resolve().ca_bundle is None
    client = client_factory(tls_influxdb.url)
    with caplog.at_level(logging.WARNING, logger='sprockets_influxdb'):
        assert deliver(client, 2) is True
    assert tls_influxdb.count('db', 'm') == 2
    assert ssl_warnings(caplog) == []


@pytest.mark.parametrize(
    ('cert_file', 'cert_dir'),
    [('ca', 'other_ca'), ('other_ca', 'ca')],
)
def test_ssl_cert_file_and_ssl_cert_dir_are_both_used(
    tls_influxdb: InfluxServer,
    client_factory: Factory,
    pki: PKI,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: pathlib.Path,
    cert_file: str,
    cert_dir: str,
) -> None:
    paths = dataclasses.asdict(pki)
    monkeypatch.setenv('SSL_CERT_FILE', paths[cert_file])
    monkeypatch.setenv(
        'SSL_CERT_DIR',
        hashed_directory(str(tmp_path / 'certs'), paths[cert_dir]),
    )
    client = client_factory(tls_influxdb.url)
    assert deliver(client) is True
    assert tls_influxdb.count('db', 'm') == 1


def test_an_unusable_ssl_cert_variable_is_named_and_skipped(
    tls_influxdb: InfluxServer,
    client_factory: Factory,
    pki: PKI,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv('SSL_CERT_FILE', '/nonexistent/ca.pem')
    monkeypatch.setenv(
        'SSL_CERT_DIR', os.pathsep.join(['/nonexistent', pki.ca_directory])
    )
    client = client_factory(tls_influxdb.url, max_batch_size=1)
    with caplog.at_level(logging.WARNING, logger='sprockets_influxdb'):
        assert deliver(client, 2) is True
        # A new HTTP client, the same TLS settings: no new warning.
        client.configure(request_timeout=5)
        assert deliver(client, 1) is True
    assert tls_influxdb.count('db', 'm') == 3
    assert client.stats().failed_requests == 0
    assert ssl_warnings(caplog) == [
        "SSL_CERT_FILE '/nonexistent/ca.pem' is ignored: "
        '[Errno 2] No such file or directory',
        "SSL_CERT_DIR names '/nonexistent', which is not a directory: "
        'it is ignored',
    ]


@pytest.mark.parametrize('content', ['missing', 'DER', 'no certificate'])
def test_without_a_usable_ssl_cert_file_the_default_cas_are_trusted(
    tls_influxdb: InfluxServer,
    client_factory: Factory,
    pki: PKI,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    content: str,
) -> None:
    path = {
        'missing': '/nonexistent/ca.pem',
        'DER': pki.ca_der,
        'no certificate': pki.client_key,
    }[content]
    monkeypatch.setenv('SSL_CERT_FILE', path)
    client = client_factory(tls_influxdb.url)
    with caplog.at_level(logging.WARNING, logger='sprockets_influxdb'):
        client.add_measurement(point())
        assert client.flush(timeout=0.5).result(timeout=20) is False
    # certifi's CAs, which do not know the private one.
    assert 'CERTIFICATE_VERIFY_FAILED' in str(client.stats().last_error)
    assert tls_influxdb.count('db', 'm') == 0
    (warning,) = ssl_warnings(caplog)
    assert warning.startswith(f'SSL_CERT_FILE {path!r} is ignored: ')


def test_a_stale_ssl_cert_file_does_not_matter_over_http(
    influxdb: InfluxServer,
) -> None:
    influxdb.create_database('db')
    result = run_script(
        f"""
        import sprockets_influxdb as influxdb

        measurement = influxdb.Measurement('db', 'm')
        measurement.set_field('i', 1)
        assert influxdb.install({influxdb.url!r})
        influxdb.add_measurement(measurement)
        assert influxdb.shutdown().result(timeout=20) is True
        """,
        {'SSL_CERT_FILE': '/nonexistent/ca.pem', 'SSL_CERT_DIR': '/nowhere'},
    )
    assert result.returncode == 0, result.stderr
    assert 'SSL_CERT' not in result.stderr
    assert influxdb.count('db', 'm') == 1


def test_ca_bundle_wins_over_ssl_cert_file(
    tls_influxdb: InfluxServer,
    client_factory: Factory,
    pki: PKI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv('SSL_CERT_FILE', pki.other_ca)
    monkeypatch.setenv('INFLUXDB_CA_BUNDLE', pki.ca)
    assert Settings.resolve().ca_bundle == pki.ca
    client = client_factory(tls_influxdb.url)
    assert deliver(client) is True
    assert tls_influxdb.count('db', 'm') == 1


def test_the_ssl_context_overrides_the_other_settings(
    tls_influxdb: InfluxServer, client_factory: Factory, pki: PKI
) -> None:
    client = client_factory(
        tls_influxdb.url,
        ca_bundle=pki.other_ca,
        verify=False,
        ssl_context=ssl.create_default_context(cafile=pki.ca),
    )
    assert deliver(client) is True
    assert tls_influxdb.count('db', 'm') == 1


def test_an_unknown_ca_stores_nothing_logs_and_keeps_the_data(
    tls_influxdb: InfluxServer,
    client_factory: Factory,
    pki: PKI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = tls_influxdb.url.replace('://', f'://bob:{SECRET}@')
    client = client_factory(url)
    with caplog.at_level(logging.DEBUG):
        client.add_measurement(point())
        assert client.flush(timeout=0.5).result(timeout=20) is False
    assert tls_influxdb.count('db', 'm') == 0
    stats = client.stats()
    assert stats.written == 0
    assert stats.dropped_total == 0
    assert 'CERTIFICATE_VERIFY_FAILED' in str(stats.last_error)
    (warning, *_) = [
        record
        for record in caplog.records
        if record.name == 'sprockets_influxdb'
    ]
    assert 'CERTIFICATE_VERIFY_FAILED' in warning.getMessage()
    assert 'keeping 1 measurements' in warning.getMessage()
    for text in (caplog.text, repr(stats), repr(client.settings)):
        assert SECRET not in text
    # Kept, and delivered once the CA is known.
    client.configure(ca_bundle=pki.ca)
    assert client.flush(timeout=10).result(timeout=20) is True
    assert tls_influxdb.count('db', 'm') == 1
    assert client.stats().written == 1


def test_another_ca_is_refused_too(
    tls_influxdb: InfluxServer, client_factory: Factory, pki: PKI
) -> None:
    client = client_factory(tls_influxdb.url, ca_bundle=pki.other_ca)
    client.add_measurement(point())
    assert client.flush(timeout=0.5).result(timeout=20) is False
    assert 'CERTIFICATE_VERIFY_FAILED' in str(client.stats().last_error)
    assert tls_influxdb.count('db', 'm') == 0


# -- no verification ---------------------------------------------------------


@pytest.mark.parametrize('given', ['verify', 'INFLUXDB_VERIFY_SSL'])
def test_verify_false_writes_and_warns_once(
    tls_influxdb: InfluxServer,
    client_factory: Factory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    given: str,
) -> None:
    settings: dict[str, object] = {}
    if given == 'verify':
        settings['verify'] = False
    else:
        monkeypatch.setenv(given, 'off')
    client = client_factory(tls_influxdb.url, max_batch_size=1, **settings)
    assert client.settings.verify is False
    with caplog.at_level(logging.WARNING, logger='sprockets_influxdb'):
        assert deliver(client, 3) is True
        # A new HTTP client, the same TLS settings: no new warning.
        client.configure(request_timeout=5)
        assert deliver(client, 2) is True
    assert tls_influxdb.count('db', 'm') == 5
    assert client.stats().requests == 5
    (warning,) = caplog.records
    assert warning.levelname == 'WARNING'
    assert warning.getMessage() == (
        'TLS certificate verification is off (verify=False): anyone able '
        f'to intercept the connection to {client.settings.url} can read '
        'and change what is written'
    )


def test_verify_false_is_not_mentioned_for_http(
    influxdb: InfluxServer,
    client_factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    influxdb.create_database('db')
    client = client_factory(influxdb.url, verify=False)
    with caplog.at_level(logging.WARNING, logger='sprockets_influxdb'):
        assert deliver(client) is True
    assert caplog.records == []


# -- client certificates -----------------------------------------------------


class ClientCertServer:
    """An HTTPS server on loopback that requires a client certificate.

    It records the certificate of each connection's peer and the body of
    each request, and answers 204.
    """

    def __init__(self, pki: PKI) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        context.load_verify_locations(pki.ca)
        context.verify_mode = ssl.CERT_REQUIRED
        self.peers: list[dict[str, typing.Any]] = []
        self.bodies: list[bytes] = []
        self.refused: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def setup(self) -> None:
                connection = typing.cast(ssl.SSLSocket, self.request)
                try:
                    connection.do_handshake()
                except (ssl.SSLError, OSError) as error:
                    owner.refused.append(str(error))
                    # Read what the client sent before closing: closed
                    # with unread data, the socket would be reset, and the
                    # client could lose the alert that says why.
                    with socket.socket(fileno=connection.detach()) as raw:
                        raw.settimeout(5)
                        with contextlib.suppress(OSError):
                            while raw.recv(65536):
                                pass
                    raise
                owner.peers.append(connection.getpeercert() or {})
                super().setup()

            def do_POST(self) -> None:
                length = int(self.headers.get('Content-Length', 0))
                owner.bodies.append(self.rfile.read(length))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: typing.Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(
                self, request: typing.Any, address: typing.Any
            ) -> None:
                pass

        self.server = Server(('127.0.0.1', 0), Handler)
        self.server.socket = context.wrap_socket(
            self.server.socket,
            server_side=True,
            do_handshake_on_connect=False,
        )
        self.url = f'https://127.0.0.1:{self.server.server_address[1]}'
        self.thread = threading.Thread(
            target=self.server.serve_forever, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def subjects(self) -> list[str]:
        return [
            value
            for peer in self.peers
            for rdn in peer.get('subject', ())
            for key, value in rdn
            if key == 'commonName'
        ]


@pytest.fixture
def client_cert_server(pki: PKI) -> typing.Iterator[ClientCertServer]:
    server = ClientCertServer(pki)
    yield server
    server.close()


@pytest.mark.parametrize(
    'given',
    [
        'client_cert and client_key',
        'cert pair',
        'cert combined',
        'INFLUXDB_CLIENT_CERT and INFLUXDB_CLIENT_KEY',
        'INFLUXDB_CLIENT_CERT combined',
        'ssl_context',
    ],
)
def test_the_client_certificate_is_presented(
    client_cert_server: ClientCertServer,
    client_factory: Factory,
    pki: PKI,
    monkeypatch: pytest.MonkeyPatch,
    given: str,
) -> None:
    settings: dict[str, object] = {'ca_bundle': pki.ca}
    if given == 'client_cert and client_key':
        settings.update(client_cert=pki.client_cert, client_key=pki.client_key)
    elif given == 'cert pair':
        settings['cert'] = (pki.client_cert, pki.client_key)
    elif given == 'cert combined':
        settings['cert'] = pki.client_combined
    elif given == 'INFLUXDB_CLIENT_CERT and INFLUXDB_CLIENT_KEY':
        monkeypatch.setenv('INFLUXDB_CLIENT_CERT', pki.client_cert)
        monkeypatch.setenv('INFLUXDB_CLIENT_KEY', pki.client_key)
    elif given == 'INFLUXDB_CLIENT_CERT combined':
        monkeypatch.setenv('INFLUXDB_CLIENT_CERT', pki.client_combined)
    else:
        context = ssl.create_default_context(cafile=pki.ca)
        context.load_cert_chain(
            pki.client_cert, pki.client_key_encrypted, password='x'
        )
        settings = {'ssl_context': context}
    client = client_factory(client_cert_server.url, **settings)
    assert deliver(client) is True
    assert client_cert_server.subjects() == ['sprockets client']
    (body,) = client_cert_server.bodies
    assert b' i=0i ' in body


def test_without_a_client_certificate_nothing_is_delivered(
    client_cert_server: ClientCertServer,
    client_factory: Factory,
    pki: PKI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = client_factory(client_cert_server.url, ca_bundle=pki.ca)
    with caplog.at_level(logging.WARNING, logger='sprockets_influxdb'):
        client.add_measurement(point())
        assert client.flush(timeout=0.5).result(timeout=20) is False
    assert client_cert_server.bodies == []
    assert client_cert_server.refused
    assert 'CERTIFICATE_REQUIRED' in str(client.stats().last_error)
    assert 'CERTIFICATE_REQUIRED' in caplog.records[0].getMessage()
    assert client.stats().dropped_total == 0
    # Kept, and delivered once the certificate is given.
    client.configure(cert=pki.client_combined)
    assert client.flush(timeout=10).result(timeout=20) is True
    assert len(client_cert_server.bodies) == 1
    assert client.stats().written == 1


# -- validation --------------------------------------------------------------


@pytest.mark.parametrize(
    ('env', 'arguments', 'error', 'match'),
    [
        ({}, {'ca_bundle': '/nonexistent/ca.pem'}, ValueError,
         "ca_bundle '/nonexistent/ca.pem' does not exist"),
        ({'INFLUXDB_CA_BUNDLE': '/nonexistent/ca.pem'}, {}, ValueError,
         "INFLUXDB_CA_BUNDLE '/nonexistent/ca.pem' does not exist"),
        ({}, {'client_cert': '/nonexistent/c.pem'}, ValueError,
         "client_cert '/nonexistent/c.pem' does not exist"),
        ({'INFLUXDB_CLIENT_CERT': '/nonexistent/c.pem'}, {}, ValueError,
         'INFLUXDB_CLIENT_CERT'),
        ({}, {'cert': ('{client_cert}', '/nonexistent/k.pem')}, ValueError,
         "client_key '/nonexistent/k.pem' does not exist"),
        ({'INFLUXDB_CLIENT_KEY': '{client_key}'}, {}, ValueError,
         'client_key is set without client_cert'),
        ({}, {'ca_bundle': '{ca_der}'}, ValueError,
         'ca_bundle .* holds no certificate in PEM format'),
        ({}, {'ca_bundle': '{client_key}'}, ValueError,
         'ca_bundle .* holds no certificate in PEM format'),
        ({}, {'client_cert': '{client_key}'}, ValueError,
         'client_cert .* holds no certificate in PEM format'),
        ({}, {'client_cert': '{client_cert}'}, ValueError,
         r'client_cert \(without client_key\) .* holds no private key'),
        ({}, {'cert': ('{client_cert}', '{client_cert}')}, ValueError,
         'client_key .* holds no private key'),
        ({}, {'cert': ('{client_cert}', '{client_key_encrypted}')},
         ValueError, 'holds an encrypted key: load it into an '
         r'ssl.SSLContext .* and give that as ssl_context'),
        ({}, {'url': 'https://h', 'cert': ('{client_cert}', '{server_key}')},
         ValueError, "client_cert '.*client.pem' and client_key "
         "'.*server.key' do not go together: .*KEY_VALUES_MISMATCH"),
        ({'INFLUXDB_URL': 'https://h',
          'INFLUXDB_CLIENT_CERT': '{server_cert}',
          'INFLUXDB_CLIENT_KEY': '{client_key}'}, {}, ValueError,
         "INFLUXDB_CLIENT_CERT '.*server.pem' and INFLUXDB_CLIENT_KEY "
         "'.*client.key' do not go together"),
        ({'INFLUXDB_URL': 'https://h', 'INFLUXDB_CLIENT_KEY': '{server_key}'},
         {'client_cert': '{client_cert}'}, ValueError,
         'client_cert .* and INFLUXDB_CLIENT_KEY .* do not go together'),
        ({}, {'client_cert': '{ca_directory}'}, ValueError,
         'client_cert .* is not a file'),
        ({}, {'ca_bundle': 42}, TypeError,
         'ca_bundle must be a path'),
        ({}, {'cert': ('a', 'b', 'c')}, TypeError,
         r'cert must be a path or a \(certificate, key\) pair'),
        ({}, {'cert': '{client_combined}', 'client_cert': '{client_cert}'},
         TypeError, 'give cert or client_cert and client_key, not both'),
        ({}, {'ssl_context': '{ca}'}, TypeError,
         'ssl_context must be an ssl.SSLContext, not str'),
        ({}, {'verify': '{ca}'}, ValueError,
         'give a CA certificate file as ca_bundle'),
        ({'INFLUXDB_VERIFY_SSL': 'maybe'}, {}, ValueError,
         "INFLUXDB_VERIFY_SSL='maybe' is not a boolean"),
        ({}, {'verify': 0}, TypeError, 'verify must be a bool'),
    ],
)  # fmt: skip
def test_tls_settings_are_checked_when_given(
    pki: PKI,
    env: dict[str, str],
    arguments: dict[str, object],
    error: type[Exception],
    match: str,
) -> None:
    paths = dataclasses.asdict(pki)

    def fill(value: object) -> object:
        if isinstance(value, str):
            return value.format(**paths)
        if isinstance(value, tuple):
            return tuple(fill(item) for item in value)
        return value

    with pytest.raises(error, match=match):
        Settings.resolve(
            environ={key: str(fill(value)) for key, value in env.items()},
            **{key: fill(value) for key, value in arguments.items()},
        )


def test_openssl_variables_are_not_read_with_the_settings(pki: PKI) -> None:
    settings = Settings.resolve(
        environ={
            'SSL_CERT_FILE': '/nonexistent/ca.pem',
            'SSL_CERT_DIR': '/nonexistent',
        },
        url='https://h',
    )
    assert settings.ca_bundle is None
    assert (
        Settings.resolve(environ={'SSL_CERT_FILE': pki.ca}).ca_bundle is None
    )


def test_a_client_key_of_another_certificate_is_refused_for_https(
    pki: PKI,
) -> None:
    client = Client(
        'http://127.0.0.1:1', cert=(pki.client_cert, pki.server_key)
    )
    try:
        with pytest.raises(ValueError, match='do not go together') as caught:
            client.configure(url='https://127.0.0.1:1')
        message = str(caught.value)
        assert message.startswith(
            f'client_cert {pki.client_cert!r} and client_key '
            f'{pki.server_key!r} do not go together: '
        )
        with open(pki.server_key, encoding='ascii') as file:
            for line in file.read().splitlines():
                assert line not in message
        assert client.settings.url.startswith('http:')
        # The right pair is accepted.
        client.configure(url='https://127.0.0.1:1', client_key=pki.client_key)
        assert client.settings.client_key == pki.client_key
    finally:
        client.shutdown(timeout=1).result(timeout=10)


def test_tls_settings_resolved(pki: PKI) -> None:
    settings = Settings.resolve(
        environ={
            'INFLUXDB_VERIFY_SSL': 'no',
            'INFLUXDB_CA_BUNDLE': f' {pki.ca} ',
            'INFLUXDB_CLIENT_CERT': pki.client_cert,
            'INFLUXDB_CLIENT_KEY': pki.client_key,
            'SSL_CERT_FILE': pki.other_ca,
        }
    )
    assert settings.verify is False
    assert settings.ca_bundle == pki.ca
    assert (settings.client_cert, settings.client_key) == (
        pki.client_cert,
        pki.client_key,
    )
    assert settings.ssl_context is None
    defaults = Settings.resolve(environ={})
    assert defaults.verify is True
    assert defaults.ca_bundle is None
    assert defaults.client_cert is None
    # Changing another setting keeps them; cert replaces both paths.
    changed = settings.replace(max_batch_size=5, cert=pki.client_combined)
    assert changed.ca_bundle == pki.ca
    assert (changed.client_cert, changed.client_key) == (
        pki.client_combined,
        None,
    )


def test_an_ssl_context_survives_install_and_configure(
    tls_influxdb: InfluxServer, pki: PKI
) -> None:
    result = run_script(
        f"""
        import ssl
        import sprockets_influxdb as influxdb

        context = ssl.create_default_context(cafile={pki.ca!r})
        assert influxdb.install({tls_influxdb.url!r}, ssl_context=context)
        influxdb.set_max_batch_size(5)
        assert influxdb.default_client().settings.ssl_context is context
        measurement = influxdb.Measurement('db', 'm')
        measurement.set_field('i', 1)
        influxdb.add_measurement(measurement)
        assert influxdb.shutdown().result(timeout=20) is True
        """
    )
    assert result.returncode == 0, result.stderr
    assert tls_influxdb.count('db', 'm') == 1


def test_the_documented_ssl_context(
    client_cert_server: ClientCertServer, pki: PKI
) -> None:
    """The example of docs/https.rst, with this test's files."""
    blocks = [
        block
        for block in code_blocks('https.rst')
        if 'ssl_context=context' in block
    ]
    (example,) = blocks
    for name, path in (
        ('ca.pem', pki.ca),
        ('client.pem', pki.client_cert),
        ('client.key', pki.client_key_encrypted),
    ):
        example = example.replace(f"'/etc/ssl/influxdb/{name}'", repr(path))
    example = example.replace(
        "'https://influxdb.example.com:8086'", repr(client_cert_server.url)
    )
    result = run_script(
        example + 'measurement = influxdb.Measurement("db", "m")\n'
        'measurement.set_field("i", 0)\n'
        'influxdb.add_measurement(measurement)\n'
        'assert influxdb.shutdown().result(timeout=20) is True\n',
        {'INFLUXDB_KEY_PASSWORD': 'x'},
    )
    assert result.returncode == 0, result.stderr
    assert client_cert_server.subjects() == ['sprockets client']
    (body,) = client_cert_server.bodies
    assert b' i=0i ' in body
