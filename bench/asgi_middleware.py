"""ASGI middleware overhead: what recording costs each request.

What is timed is a whole request to a FastAPI application, in
microseconds, called in-process: ``GET /items/42``, routed to the one route
``GET /items/{item_id}``, whose ``async`` endpoint returns a small JSON
dict.  The application is called directly as an ASGI callable,
``await app(scope, receive, send)``, with a fresh copy of a fixed HTTP
scope (and a fresh ``state`` dict) per request, a ``receive`` that returns
the empty request body and a ``send`` that only checks the status: no
server, no socket, no second thread, so the figures are those of the
application and its middleware alone, and steady from round to round.

Four applications, identical but for their request-metrics middleware:

* bare: the FastAPI application alone;
* ours: ``app.add_middleware(InfluxDBMiddleware, database='bench',
  measurement='request', client=client)``, with a
  ``sprockets_influxdb.Client`` pointed at an unreachable local URL with a
  huge interval, trigger size and buffer size, so that nothing is written
  while it is timed (writing is the writer thread's job, not the request
  path's).  Its buffer is emptied between rounds, outside the timing,
  after checking that the round recorded every request;
* opentelemetry: ``FastAPIInstrumentor.instrument_app`` with an SDK
  ``TracerProvider`` whose spans go to an in-memory exporter through a
  ``SimpleSpanProcessor``, and an SDK ``MeterProvider`` with an in-memory
  metric reader: spans and metrics are really recorded.  The exporter is
  emptied between rounds, after checking that the round made one server
  span per request;
* prometheus: ``Instrumentator().instrument(app)`` of
  prometheus-fastapi-instrumentator (its default metrics, in a registry of
  its own); the script checks that its request counter counts every
  request.

The contenders alternate round by round (the order rotates), each round
being a number of requests to the contender's application.  The overhead
of a middleware is the median, over the rounds, of its time per request
minus the bare application's in the same round.  Target (SPEC section 9):
ours adds less than each of the others; SPEC's aim, a fifth of the best
of them, is reported for information.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
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

try:
    from fastapi import FastAPI
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_fastapi_instrumentator import Instrumentator
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette_exporter import PrometheusMiddleware

    from sprockets_influxdb.asgi import InfluxDBMiddleware
except ImportError as error:  # pragma: no cover - a missing extra
    print(
        f'asgi_middleware: {error}: run `pip install fastapi '
        'opentelemetry-instrumentation-fastapi opentelemetry-sdk '
        "prometheus-fastapi-instrumentator starlette` or `pip install -e '"
        ".[bench]'`",
        file=sys.stderr,
    )
    raise SystemExit(2) from None

AIM = 5.0  # a fifth of the best competitor: informational
HUGE = 10**9
UNREACHABLE = 'http://127.0.0.1:9/write'  # discard port: nothing listens
ROUTE = '/items/{item_id}'
STARLETTE_ROUTE = '/items/{item_id:int}'
PATH = '/items/42'
SCOPE: dict[str, Any] = {
    'type': 'http',
    'asgi': {'version': '3.0', 'spec_version': '2.3'},
    'http_version': '1.1',
    'method': 'GET',
    'scheme': 'http',
    'path': PATH,
    'raw_path': PATH.encode(),
    'root_path': '',
    'query_string': b'',
    'headers': [
        (b'host', b'127.0.0.1:8000'),
        (b'user-agent', b'bench'),
        (b'accept', b'*/*'),
    ],
    'client': ('127.0.0.1', 50000),
    'server': ('127.0.0.1', 8000),
}
REQUEST_MESSAGE = {'type': 'http.request', 'body': b'', 'more_body': False}
START = 'http.response.start'
NAMES = ('bare', 'ours', 'opentelemetry', 'prometheus')
STARLETTE_NAMES = (*NAMES, 'starlette_exporter')
# Issue 15's targets for ours, in microseconds per request.
TARGETS = {'starlette': 5.0, 'fastapi': 6.0}


FRAMEWORK = 'fastapi'  # the framework of the applications being made


def make_app() -> Any:
    """The application every contender serves, without a middleware."""
    if FRAMEWORK == 'starlette':

        async def endpoint(request: Request) -> JSONResponse:
            item_id = int(request.path_params['item_id'])
            return JSONResponse(
                {'item_id': item_id, 'name': 'widget', 'tags': ['a', 'b']}
            )

        return Starlette(routes=[Route(STARLETTE_ROUTE, endpoint)])
    app = FastAPI()

    @app.get(ROUTE)
    async def read_item(item_id: int) -> Any:
        return {'item_id': item_id, 'name': 'widget', 'tags': ['a', 'b']}

    return app


async def receive() -> dict[str, Any]:
    """The request body: empty, in one message."""
    return REQUEST_MESSAGE


async def send(message: dict[str, Any]) -> None:
    """Accept a response message; fail on a status other than 200."""
    if message['type'] == START and message['status'] != 200:
        raise RuntimeError(f'unexpected response: {message!r}')


async def requests(app: Any, number: int) -> float:
    """Send *number* requests to *app*, one after the other.

    :returns: seconds per request
    """
    copy = SCOPE.copy
    start = time.perf_counter()
    for _ in range(number):
        scope = copy()
        scope['state'] = {}
        await app(scope, receive, send)
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
    app.add_middleware(
        InfluxDBMiddleware,
        database=DATABASE,
        measurement=MEASUREMENT,
        client=client,
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
    """The application with OpenTelemetry's FastAPI instrumentation."""
    app = make_app()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    if FRAMEWORK == 'starlette':
        from opentelemetry.instrumentation.starlette import (
            StarletteInstrumentor,
        )

        StarletteInstrumentor.instrument_app(
            app, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
    else:
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=tracer_provider, meter_provider=meter_provider
        )

    def after(number: int) -> None:
        spans = exporter.get_finished_spans()
        servers = sum(1 for span in spans if span.parent is None)
        assert servers == number, (servers, number)
        exporter.clear()

    return Contender(app, after)


def prometheus() -> Contender:
    """The application with prometheus-fastapi-instrumentator."""
    app = make_app()
    registry = CollectorRegistry()
    Instrumentator(registry=registry).instrument(app)
    route = STARLETTE_ROUTE if FRAMEWORK == 'starlette' else ROUTE
    labels = {'handler': route, 'method': 'GET', 'status': '2xx'}

    return Contender(app, counted_by(registry, 'http_requests_total', labels))


def starlette_exporter() -> Contender:
    """The application with starlette_exporter's middleware."""
    app = make_app()
    # It registers its metrics in prometheus_client's default registry.
    registry = REGISTRY
    app.add_middleware(PrometheusMiddleware, group_paths=True)
    labels = {
        'method': 'GET',
        'path': STARLETTE_ROUTE,
        'status_code': '200',
        'app_name': 'starlette',
    }

    return Contender(
        app, counted_by(registry, 'starlette_requests_total', labels)
    )


def measure(rounds: int, number: int) -> dict[str, list[float]]:
    """Make the applications and time them, round by round."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
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
        if FRAMEWORK == 'starlette':
            applications['starlette_exporter'] = starlette_exporter()

        def contender(name: str) -> Callable[[], float]:
            application = applications[name]

            def run() -> float:
                seconds = loop.run_until_complete(
                    requests(application.app, number)
                )
                application.after(number)
                return seconds

            return run

        contenders = {name: contender(name) for name in applications}
        for run in contenders.values():  # warm up
            run()
        return alternate(contenders, rounds)
    finally:
        client.shutdown().result(timeout=30)
        loop.close()
        asyncio.set_event_loop(None)


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


def main() -> None:
    global FRAMEWORK
    args = parse_args(__doc__.splitlines()[0], rounds=30, number=1500)
    # Nothing is delivered, on purpose: do not warn about it.
    logging.getLogger('sprockets_influxdb').setLevel(logging.ERROR)
    print(f'asgi_middleware: {describe_machine()}')
    summaries = []
    met = True
    for framework in ('starlette', 'fastapi'):
        FRAMEWORK = framework
        print(
            f'  {framework}: {args.rounds} rounds of {args.number} requests '
            f'per contender, GET {PATH} called in-process'
        )
        results = measure(args.rounds, args.number)
        for name, values in results.items():
            print(
                f'  {name:19} median {median(values) * 1e6:.2f} us per '
                f'request (min/max {spread(values)})'
            )
        added = overheads(results)
        mine = added['ours']
        others = {
            name: value for name, value in added.items() if name != 'ours'
        }
        print(
            '  overhead over bare (median of the per-round differences): '
            + ', '.join(
                f'{name} {value * 1e6:+.2f} us'
                for name, value in added.items()
            )
        )
        for name, value in others.items():
            ratio = value / mine if mine > 0 else float('inf')
            print(f'  ours adds {ratio:.1f}x less than {name}')
        best_name = min(others, key=others.__getitem__)
        best = others[best_name]
        ratio = best / mine if mine > 0 else float('inf')
        target = TARGETS[framework]
        print(
            f'  aim, for information: a fifth of the best competitor '
            f'({best_name}, {best / AIM * 1e6:.2f} us); ours is {ratio:.1f}x '
            f'less: {"reached" if ratio >= AIM else "not reached"}; issue '
            f'15: at most +{target:g} us: '
            f'{"met" if mine * 1e6 <= target else "not met"}'
        )
        met = met and mine < best
        summaries.append(
            f'{framework} ours {mine * 1e6:+.2f} us (issue 15: <= '
            f'+{target:g}), {best_name} {best * 1e6:+.2f} us, '
            f'{ratio:.1f}x less'
        )
    print(
        'asgi_middleware: overhead '
        + '; '.join(summaries)
        + f' (target: the lowest): {verdict(met)}'
    )


if __name__ == '__main__':
    main()
