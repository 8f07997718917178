"""The example applications of integrations/ without the integration.

The soak (``bench/soak.py``) serves each example twice, with and without
the library, to give the library's cost on the request path.  The apps here
are the examples' own routes and handlers, served by the same servers the
same way, with the library's middleware or mixin taken out.  Their handlers
that set a field on the request's measurement get a shared stand-in that
goes nowhere (one dictionary write, as for an excluded path).

Serve one with ``python bench/_soak_bare.py {tornado,starlette,fastapi}
--port PORT``, or Flask with ``gunicorn ... bench._soak_bare:flask_app``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from sprockets_influxdb import Measurement  # noqa: E402
from sprockets_influxdb.wsgi import ENVIRON_KEY  # noqa: E402

STAND_IN = Measurement('bare', 'request')


class StandIn:
    """ASGI: give handlers ``request.state.influxdb``, record nothing."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope['type'] == 'http':
            scope.setdefault('state', {})['influxdb'] = STAND_IN
        await self.app(scope, receive, send)


def _without_middleware(app: Any) -> Any:
    from starlette.middleware import Middleware

    from sprockets_influxdb.asgi import InfluxDBMiddleware

    app.user_middleware = [
        Middleware(StandIn) if entry.cls is InfluxDBMiddleware else entry
        for entry in app.user_middleware
    ]
    return app


def starlette_app() -> Any:
    from integrations import starlette_app

    return _without_middleware(starlette_app.make_app('bare'))


def fastapi_app() -> Any:
    from integrations import fastapi_app

    return _without_middleware(fastapi_app.make_app('bare'))


def _flask_app() -> Any:
    from integrations import flask_app as example

    app = example.make_app('bare')
    recorded = app.wsgi_app
    inner = recorded.app  # type: ignore[attr-defined]

    def stand_in(environ: dict[str, Any], start_response: Any) -> Any:
        environ[ENVIRON_KEY] = STAND_IN
        return inner(environ, start_response)

    app.wsgi_app = stand_in  # type: ignore[method-assign]
    return app


def tornado_app() -> Any:
    from tornado import routing, web

    from integrations import tornado_app as example

    handlers = {}
    for cls in (
        example.IndexHandler,
        example.ItemHandler,
        example.UserHandler,
        example.StreamHandler,
        example.TeapotHandler,
        example.ErrorHandler,
    ):
        body = {
            name: value
            for name, value in vars(cls).items()
            if name not in ('__dict__', '__weakref__')
        }
        body['influxdb'] = STAND_IN
        handlers[cls.__name__] = type(
            cls.__name__, (web.RequestHandler,), body
        )
    return web.Application(
        [
            (r'/', handlers['IndexHandler']),
            (r'/items/(?P<item_id>\d+)', handlers['ItemHandler']),
            (
                routing.PathMatches(r'/api/.*'),
                [(r'/api/users/(\d+)', handlers['UserHandler'])],
            ),
            (r'/stream', handlers['StreamHandler']),
            (r'/teapot', handlers['TeapotHandler']),
            (r'/error', handlers['ErrorHandler']),
        ]
    )


def __getattr__(name: str) -> Any:
    # ``flask_app``, built when gunicorn asks for it.
    if name == 'flask_app':
        return _flask_app()
    raise AttributeError(name)


async def _serve_tornado(port: int) -> None:
    app = tornado_app()
    server = app.listen(port, address='127.0.0.1')
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        'framework', choices=['tornado', 'starlette', 'fastapi']
    )
    parser.add_argument('--port', type=int, default=8000)
    arguments = parser.parse_args()
    if arguments.framework == 'tornado':
        import logging

        logging.basicConfig(level=logging.INFO)
        logging.getLogger('tornado.access').setLevel(logging.WARNING)
        asyncio.run(_serve_tornado(arguments.port))
        return
    import uvicorn

    app = (
        starlette_app()
        if arguments.framework == 'starlette'
        else fastapi_app()
    )
    config = uvicorn.Config(
        app, host='127.0.0.1', port=arguments.port, log_level='warning'
    )
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == '__main__':
    main()
