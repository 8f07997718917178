"""The applications ``bench/served.py`` serves, one per server process.

Not a benchmark itself.  Every application answers ``GET /items/<id>``
with a small JSON document, through a route with a path parameter, and is
made the same way for every contender but for its request-metrics
integration, chosen by two environment variables:

* ``SERVED_FRAMEWORK``: ``tornado``, ``starlette``, ``fastapi`` or
  ``flask``;
* ``SERVED_CONTENDER``: ``bare`` (no integration), ``ours`` (this
  library's), ``historical`` (sprockets-influxdb 2.2.1's Tornado mixin),
  ``prometheus`` (prometheus-fastapi-instrumentator for Starlette and
  FastAPI, prometheus_flask_exporter for Flask), ``starlette_exporter``,
  or ``opentelemetry`` (OpenTelemetry's instrumentation of the framework
  with the SDK: spans through a ``BatchSpanProcessor`` to an exporter that
  counts and drops them, metrics in an in-memory reader).

The InfluxDB side comes from the usual variables (``INFLUXDB_URL``,
``INFLUXDB_INTERVAL``...) and the database from ``SERVED_DATABASE``.

uvicorn and gunicorn import ``app`` from this module (``--app-dir bench``
or ``--chdir bench``).  Tornado's server is this module run as a script:
``python bench/_served_app.py PORT``; it stops on SIGTERM, after
delivering what its integration recorded.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

FRAMEWORK = os.environ.get('SERVED_FRAMEWORK', 'starlette')
CONTENDER = os.environ.get('SERVED_CONTENDER', 'bare')
DATABASE = os.environ.get('SERVED_DATABASE', 'served')
MEASUREMENT = 'request'
BODY = {'item_id': 42, 'name': 'widget', 'tags': ['a', 'b']}

BENCH = os.path.dirname(os.path.abspath(__file__))
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)
from _common import ROOT  # noqa: E402  (sets the base tags' variables)

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _tracing() -> tuple[Any, Any]:
    """OpenTelemetry's SDK providers: batched spans, dropped; metrics kept."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Dropping(SpanExporter):
        """Counts the spans exported, keeps none."""

        def __init__(self) -> None:
            self.exported = 0

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            self.exported += len(spans)
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Dropping()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return tracer_provider, meter_provider


def _unknown() -> SystemExit:
    return SystemExit(
        f'_served_app: no contender {CONTENDER!r} for {FRAMEWORK!r}'
    )


def starlette_app() -> Any:
    """A Starlette application, with the contender's integration."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def read_item(request: Request) -> JSONResponse:
        item_id = int(request.path_params['item_id'])
        return JSONResponse({**BODY, 'item_id': item_id})

    middleware = []
    if CONTENDER == 'ours':
        from sprockets_influxdb.asgi import InfluxDBMiddleware

        middleware.append(
            Middleware(
                InfluxDBMiddleware,
                database=DATABASE,
                measurement=MEASUREMENT,
            )
        )
    elif CONTENDER == 'starlette_exporter':
        from starlette_exporter import PrometheusMiddleware

        middleware.append(Middleware(PrometheusMiddleware))
    app = Starlette(
        routes=[Route('/items/{item_id:int}', read_item)],
        middleware=middleware,
    )
    if CONTENDER == 'prometheus':
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator().instrument(app)
    elif CONTENDER == 'opentelemetry':
        from opentelemetry.instrumentation.starlette import (
            StarletteInstrumentor,
        )

        tracer_provider, meter_provider = _tracing()
        StarletteInstrumentor.instrument_app(
            app, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
    elif CONTENDER not in ('bare', 'ours', 'starlette_exporter'):
        raise _unknown()
    return app


def fastapi_app() -> Any:
    """A FastAPI application, with the contender's integration."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get('/items/{item_id}')
    async def read_item(item_id: int) -> Any:
        return {**BODY, 'item_id': item_id}

    if CONTENDER == 'ours':
        from sprockets_influxdb.asgi import InfluxDBMiddleware

        app.add_middleware(
            InfluxDBMiddleware, database=DATABASE, measurement=MEASUREMENT
        )
    elif CONTENDER == 'prometheus':
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator().instrument(app)
    elif CONTENDER == 'starlette_exporter':
        from starlette_exporter import PrometheusMiddleware

        app.add_middleware(PrometheusMiddleware)
    elif CONTENDER == 'opentelemetry':
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        tracer_provider, meter_provider = _tracing()
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
    elif CONTENDER != 'bare':
        raise _unknown()
    return app


def flask_app() -> Any:
    """A Flask application, with the contender's integration."""
    from flask import Flask

    app = Flask('served')

    @app.get('/items/<int:item_id>')
    def read_item(item_id: int) -> Any:
        return {**BODY, 'item_id': item_id}

    if CONTENDER == 'ours':
        from sprockets_influxdb.wsgi import InfluxDBMiddleware

        app.wsgi_app = InfluxDBMiddleware(  # type: ignore[method-assign]
            app.wsgi_app, database=DATABASE, measurement=MEASUREMENT
        )
    elif CONTENDER == 'prometheus':
        from prometheus_flask_exporter import PrometheusMetrics

        PrometheusMetrics(app)
    elif CONTENDER == 'opentelemetry':
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        tracer_provider, meter_provider = _tracing()
        FlaskInstrumentor.instrument_app(
            app, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
    elif CONTENDER != 'bare':
        raise _unknown()
    return app


SETTINGS = {'sprockets_influxdb.database': DATABASE, 'service': MEASUREMENT}


def tornado_handler() -> Any:
    """The Tornado handler class, with the contender's mixin."""
    from tornado import web

    class BareHandler(web.RequestHandler):
        def get(self, item_id: str) -> None:
            self.write({**BODY, 'item_id': int(item_id)})

    if CONTENDER == 'bare':
        return BareHandler
    if CONTENDER == 'ours':
        import sprockets_influxdb

        mixin = sprockets_influxdb.InfluxDBMixin
    elif CONTENDER == 'historical':
        from _common import load_historical

        mixin = load_historical().InfluxDBMixin
    else:
        raise _unknown()
    return type('ItemHandler', (mixin, BareHandler), {})


def serve_tornado(port: int) -> None:
    """Serve the Tornado application on 127.0.0.1:*port* until SIGTERM."""
    import asyncio
    import signal

    from tornado import httpserver, web

    handler = tornado_handler()
    historical = sys.modules.get('sprockets_influxdb_221')

    async def main() -> None:
        if historical is not None:
            url = os.environ['INFLUXDB_URL'].rstrip('/') + '/write'
            historical.install(
                url=url,
                submission_interval=int(os.environ['INFLUXDB_INTERVAL']),
            )
        application = web.Application(
            [(r'/items/(?P<item_id>\d+)', handler)], **SETTINGS
        )
        server = httpserver.HTTPServer(application)
        server.listen(port, '127.0.0.1')
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        print('ready', flush=True)
        await stop.wait()
        server.stop()
        if CONTENDER == 'ours':
            import sprockets_influxdb

            await asyncio.wrap_future(sprockets_influxdb.shutdown())
        elif historical is not None:
            await historical.shutdown()

    asyncio.run(main())


if FRAMEWORK == 'starlette':
    app = starlette_app()
elif FRAMEWORK == 'fastapi':
    app = fastapi_app()
elif FRAMEWORK == 'flask':
    app = flask_app()
elif FRAMEWORK != 'tornado':
    raise SystemExit(f'_served_app: unknown framework {FRAMEWORK!r}')

if __name__ == '__main__':
    serve_tornado(int(sys.argv[1]))
