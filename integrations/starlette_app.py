"""A small Starlette application whose every request is recorded.

Serve it with ``python integrations/starlette_app.py --port 8000``
(uvicorn), or with any ASGI server, asyncio or trio:
``hypercorn --worker-class trio integrations.starlette_app:app``.  The
InfluxDB server comes from the usual ``INFLUXDB_*`` variables, the database
from ``REQUEST_DATABASE`` (default ``example``).  At shutdown (lifespan) the
middleware flushes what is buffered; the application calls nothing.

Routes:

==================================  =====================================
``GET /``                           a plain route
``GET /items/{item_id}``            a path parameter (an ``int``)
``GET /api/users/{user_id}``        a route in a mount
``GET /api/v2/things/{name}``       a route in a mount in a mount
``GET /stream``                     three chunks, 0.1 s apart
``GET /background``                 a response, then a 0.3 s background task
``GET /teapot``                     ``HTTPException(418)``
``GET /error``                      an uncaught exception (500)
``WEBSOCKET /ws``                   echoes one message (not recorded)
anything else                       404
==================================  =====================================
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator

import anyio
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from integrations import stats_file  # noqa: E402
from sprockets_influxdb.asgi import InfluxDBMiddleware  # noqa: E402


async def homepage(request: Request) -> JSONResponse:
    return JSONResponse({'hello': 'world'})


async def item(request: Request) -> JSONResponse:
    item_id = request.path_params['item_id']
    request.state.influxdb.set_field('item_id', item_id)
    return JSONResponse({'item_id': item_id})


async def user(request: Request) -> JSONResponse:
    return JSONResponse({'user_id': request.path_params['user_id']})


async def thing(request: Request) -> JSONResponse:
    return JSONResponse({'thing': request.path_params['name']})


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for number in range(3):
            yield f'chunk {number}\n'.encode()
            await anyio.sleep(0.1)

    return StreamingResponse(chunks(), media_type='text/plain')


async def slow_task() -> None:
    await anyio.sleep(0.3)


async def background(request: Request) -> JSONResponse:
    return JSONResponse({'queued': True}, background=BackgroundTask(slow_task))


async def teapot(request: Request) -> JSONResponse:
    raise HTTPException(418)


async def error(request: Request) -> JSONResponse:
    raise ValueError('something went wrong')


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


def make_app(database: str = 'example') -> Starlette:
    """Build the example application.

    :param database: where request measurements are written
    """
    return Starlette(
        routes=[
            Route('/', homepage),
            Route('/items/{item_id:int}', item),
            Mount(
                '/api',
                routes=[
                    Route('/users/{user_id}', user),
                    Mount('/v2', routes=[Route('/things/{name}', thing)]),
                ],
            ),
            Route('/stream', stream),
            Route('/background', background),
            Route('/teapot', teapot),
            Route('/error', error),
            WebSocketRoute('/ws', echo),
        ],
        middleware=[Middleware(InfluxDBMiddleware, database=database)],
    )


app = make_app(os.environ.get('REQUEST_DATABASE', 'example'))
stats_file.export()


def main() -> None:
    """Serve the example with uvicorn until SIGTERM or SIGINT."""
    import uvicorn

    parser = argparse.ArgumentParser(description='Starlette example app')
    parser.add_argument('--port', type=int, default=8000)
    arguments = parser.parse_args()
    config = uvicorn.Config(
        'integrations.starlette_app:app',
        host='127.0.0.1',
        port=arguments.port,
        log_level='warning',
    )
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == '__main__':
    main()
