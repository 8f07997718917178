"""WSGI middleware overhead: what recording costs each request.

What is timed is a whole request to a Flask application, in microseconds,
called in-process: ``GET /items/42``, routed to the one URL rule
``GET /items/<int:item_id>``, whose view returns a small JSON dict.  The
application is called directly as a WSGI callable, ``app(environ,
start_response)``, with a fresh copy of a fixed ``environ`` per request and
a ``start_response`` that only checks the status; the response iterable is
consumed and closed, as a server does: no server, no socket, no second
thread, so the figures are those of the application and its middleware
alone, and steady from round to round.

Four applications, identical but for their request-metrics middleware:

* bare: the Flask application alone;
* ours: ``app.wsgi_app = InfluxDBMiddleware(app.wsgi_app, database='bench',
  measurement='request', client=client)``, with a
  ``sprockets_influxdb.Client`` pointed at an unreachable local URL with a
  huge interval, trigger size and buffer size, so that nothing is written
  while it is timed (writing is the writer thread's job, not the request
  path's).  Its buffer is emptied between rounds, outside the timing,
  after checking that the round recorded every request;
* opentelemetry: ``FlaskInstrumentor.instrument_app`` with an SDK
  ``TracerProvider`` whose spans go to an in-memory exporter through a
  ``SimpleSpanProcessor``, and an SDK ``MeterProvider`` with an in-memory
  metric reader: spans and metrics are really recorded.  The exporter is
  emptied between rounds, after checking that the round made one server
  span per request;
* prometheus: ``PrometheusMetrics(app)`` of prometheus_flask_exporter (its
  default metrics, in a registry of its own); the script checks that its
  request counter counts every request.

The contenders alternate round by round (the order rotates), each round
being a number of requests to the contender's application.  The overhead
of a middleware is the median, over the rounds, of its time per request
minus the bare application's in the same round.  Target (SPEC section 9):
ours adds less than OpenTelemetry's instrumentation (the issue's target)
and less than prometheus_flask_exporter (ours the lowest); SPEC's aim, a
fifth of the best of them, is reported for information.
"""

from __future__ import annotations

import io
import logging
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from _common import (
    DATABASE,
    MEASUREMENT,
    alternate,
    counted_by,
    describe_machine,
    median,
    parse_args,
    spread,
    verdict,
)

import sprockets_influxdb
from sprockets_influxdb import buffer

try:
    from flask import Flask
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )
    from prometheus_client import CollectorRegistry
    from prometheus_flask_exporter import PrometheusMetrics

    from sprockets_influxdb.wsgi import InfluxDBMiddleware
except ImportError as error:  # pragma: no cover - a missing extra
    print(
        f'wsgi_middleware: {error}: run `pip install flask '
        'opentelemetry-instrumentation-flask opentelemetry-sdk '
        "prometheus-flask-exporter` or `pip install -e '.[bench]'`",
        file=sys.stderr,
    )
    raise SystemExit(2) from None

AIM = 5.0  # a fifth of the best competitor: informational
HUGE = 10**9
UNREACHABLE = 'http://127.0.0.1:9/write'  # discard port: nothing listens
RULE = '/items/<int:item_id>'
PATH = '/items/42'
ENVIRON: dict[str, Any] = {
    'REQUEST_METHOD': 'GET',
    'SCRIPT_NAME': '',
    'PATH_INFO': PATH,
    'QUERY_STRING': '',
    'SERVER_NAME': '127.0.0.1',
    'SERVER_PORT': '8000',
    'SERVER_PROTOCOL': 'HTTP/1.1',
    'REMOTE_ADDR': '127.0.0.1',
    'REMOTE_PORT': '50000',
    'HTTP_HOST': '127.0.0.1:8000',
    'HTTP_USER_AGENT': 'bench',
    'HTTP_ACCEPT': '*/*',
    'wsgi.version': (1, 0),
    'wsgi.url_scheme': 'http',
    'wsgi.input': io.BytesIO(b''),  # never read: a GET without a body
    'wsgi.errors': sys.stderr,
    'wsgi.multithread': False,
    'wsgi.multiprocess': False,
    'wsgi.run_once': False,
}
STATUS = '200 OK'
NAMES = ('bare', 'ours', 'opentelemetry', 'prometheus')


def make_app() -> Flask:
    """The application every contender serves, without a middleware."""
    app = Flask(__name__)

    @app.get(RULE)
    def read_item(item_id: int) -> Any:
        return {'item_id': item_id, 'name': 'widget', 'tags': ['a', 'b']}

    return app


def write(data: bytes) -> None:
    """The legacy ``write`` callable: unused by Flask."""


def start_response(
    status: str, headers: list[tuple[str, str]], exc_info: Any = None
) -> Callable[[bytes], None]:
    """Accept the response's status and headers; fail on other than 200."""
    if status != STATUS:
        raise RuntimeError(f'unexpected response: {status!r}')
    return write


def requests(app: Any, number: int) -> float:
    """Send *number* requests to *app*, one after the other.

    Each response is consumed and closed, as a WSGI server does.

    :returns: seconds per request
    """
    copy = ENVIRON.copy
    start = time.perf_counter()
    for _ in range(number):
        body: Iterable[bytes] = app(copy(), start_response)
        try:
            for _chunk in body:
                pass
        finally:
            close = getattr(body, 'close', None)
            if close is not None:
                close()
    return (time.perf_counter() - start) / number


class Contender:
    """One application, and what checks and resets it after a round."""

    def __init__(self, app: Any, after: Callable[[int], None]) -> None:
        self.app = app
        self.after = after


def bare() -> Contender:
    """The application alone."""
    return Contender(make_app(), lambda number: None)


def ours(client: sprockets_influxdb.Client) -> Contender:
    """The application with this library's middleware."""
    app = make_app()
    app.wsgi_app = InfluxDBMiddleware(  # type: ignore[method-assign]
        app.wsgi_app,
        database=DATABASE,
        measurement=MEASUREMENT,
        client=client,
    )
    # One request first, outside the timing: it must carry the URL rule.
    requests(app, 1)
    entries = list(buffer.entries(client._buffer.take()))
    assert len(entries) == 1, entries
    _, database, name, tags, fields, _ = entries[0]
    assert (database, name) == (DATABASE, MEASUREMENT), entries
    assert tags['endpoint'] == RULE, tags
    assert tags['status_code'] == '200', tags
    print(
        f'  ours records: {name} '
        + ','.join(f'{key}={value}' for key, value in sorted(tags.items()))
        + ' '
        + ','.join(f'{key}={value!r}' for key, value in fields.items())
    )
    previous = client.stats().added

    def after(number: int) -> None:
        nonlocal previous
        added = client.stats().added
        assert added - previous == number, (added, previous, number)
        previous = added
        # Nothing is ever written: keep the buffer from growing.
        client._buffer.clear()

    return Contender(app, after)


def opentelemetry() -> Contender:
    """The application with OpenTelemetry's Flask instrumentation."""
    app = make_app()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    FlaskInstrumentor.instrument_app(
        app, tracer_provider=tracer_provider, meter_provider=meter_provider
    )

    def after(number: int) -> None:
        spans = exporter.get_finished_spans()
        servers = sum(1 for span in spans if span.parent is None)
        assert servers == number, (servers, number)
        exporter.clear()

    return Contender(app, after)


def prometheus() -> Contender:
    """The application with prometheus_flask_exporter."""
    app = make_app()
    registry = CollectorRegistry()
    PrometheusMetrics(app, registry=registry)
    labels = {'method': 'GET', 'status': '200'}

    return Contender(
        app, counted_by(registry, 'flask_http_request_total', labels)
    )


def measure(rounds: int, number: int) -> dict[str, list[float]]:
    """Make the four applications and time them, round by round."""
    client = sprockets_influxdb.Client(
        url=UNREACHABLE,
        submission_interval=HUGE,
        trigger_size=HUGE,
        max_buffer_size=HUGE,
        shutdown_timeout=0,
    )
    try:
        applications = {
            'bare': bare(),
            'ours': ours(client),
            'opentelemetry': opentelemetry(),
            'prometheus': prometheus(),
        }

        def contender(name: str) -> Callable[[], float]:
            application = applications[name]

            def run() -> float:
                seconds = requests(application.app, number)
                application.after(number)
                return seconds

            return run

        contenders = {name: contender(name) for name in NAMES}
        for run in contenders.values():  # warm up
            run()
        return alternate(contenders, rounds)
    finally:
        client._buffer.clear()
        client.shutdown().result(timeout=30)


def overheads(results: dict[str, list[float]]) -> dict[str, float]:
    """The overhead of each middleware: median of its per-round differences.

    Each round, a middleware's time per request minus the bare
    application's in the same round: the contenders of a round run within a
    second of each other, so slower and faster phases of a shared machine
    cancel out.
    """
    base = results['bare']
    return {
        name: median([value - bare for value, bare in zip(values, base)])
        for name, values in results.items()
        if name != 'bare'
    }


def less(other: float, mine: float) -> float:
    """How many times less than *other* ours adds."""
    return other / mine if mine > 0 else float('inf')


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], rounds=30, number=2000)
    # Nothing is delivered, on purpose: do not warn about it.
    logging.getLogger('sprockets_influxdb').setLevel(logging.ERROR)
    print(f'wsgi_middleware: {describe_machine()}')
    print(
        f'  {args.rounds} rounds of {args.number} requests per contender, '
        f'GET {PATH} to Flask called in-process'
    )
    results = measure(args.rounds, args.number)
    for name, values in results.items():
        print(
            f'  {name:16} median {median(values) * 1e6:.2f} us per request '
            f'(min/max {spread(values)})'
        )
    added = overheads(results)
    mine = added['ours']
    others = {name: value for name, value in added.items() if name != 'ours'}
    print(
        '  overhead over bare (median of the per-round differences): '
        + ', '.join(
            f'{name} {value * 1e6:+.2f} us' for name, value in added.items()
        )
    )
    for name, value in others.items():
        print(f'  ours adds {less(value, mine):.1f}x less than {name}')
    best_name = min(others, key=others.__getitem__)
    best = others[best_name]
    print(
        f'  ours the lowest (SPEC: less than each competitor): '
        f'{verdict(mine < best)}'
    )
    ratio = less(best, mine)
    print(
        f'  aim, for information: a fifth of the best competitor '
        f'({best_name}, {best / AIM * 1e6:.2f} us); ours is {ratio:.1f}x '
        f'less: {"reached" if ratio >= AIM else "not reached"}'
    )
    otel = others['opentelemetry']
    print(
        f'wsgi_middleware: overhead ours {mine * 1e6:+.2f} us, '
        + ', '.join(
            f'{name} {value * 1e6:+.2f} us' for name, value in others.items()
        )
        + f' per request -> {less(otel, mine):.1f}x less than '
        f'opentelemetry (target: lower than opentelemetry): '
        f'{verdict(mine < otel)}'
    )


if __name__ == '__main__':
    main()
