"""A small FastAPI application whose every request is recorded.

Serve it with ``python integrations/fastapi_app.py --port 8000`` (uvicorn).
The InfluxDB server comes from the usual ``INFLUXDB_*`` variables, the
database from ``REQUEST_DATABASE`` (default ``example``).  At shutdown
(lifespan) the middleware flushes what is buffered.

Routes:

==================================  =====================================
``GET /``                           a plain route
``GET /items/{item_id}``            a path parameter (an ``int``)
``GET /api/users/{user_id}``        a route of a router included at /api
``GET /api/v2/deep/{key}``          a router included in that router
``GET /sub/things/{name}``          a route of a mounted FastAPI app
``GET /stream``                     three chunks, 0.1 s apart
``GET /background``                 a response, then a 0.3 s background task
``GET /teapot``                     ``HTTPException(418)``
``GET /error``                      an uncaught exception (500)
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
from fastapi import APIRouter, BackgroundTasks, FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from integrations import stats_file  # noqa: E402
from sprockets_influxdb.asgi import InfluxDBMiddleware  # noqa: E402

router = APIRouter()


@router.get('/users/{user_id}')
async def user(user_id: int) -> dict[str, int]:
    return {'user_id': user_id}


inner = APIRouter()


@inner.get('/deep/{key}')
async def deep(key: str) -> dict[str, str]:
    return {'key': key}


router.include_router(inner, prefix='/v2')


sub = FastAPI()


@sub.get('/things/{name}')
async def thing(name: str) -> dict[str, str]:
    return {'thing': name}


async def slow_task() -> None:
    await anyio.sleep(0.3)


def make_app(database: str = 'example') -> FastAPI:
    """Build the example application.

    :param database: where request measurements are written
    """
    app = FastAPI()

    @app.get('/')
    async def homepage() -> dict[str, str]:
        return {'hello': 'world'}

    @app.get('/items/{item_id}')
    async def item(item_id: int, request: Request) -> dict[str, int]:
        request.state.influxdb.set_field('item_id', item_id)
        return {'item_id': item_id}

    @app.get('/stream')
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for number in range(3):
                yield f'chunk {number}\n'.encode()
                await anyio.sleep(0.1)

        return StreamingResponse(chunks(), media_type='text/plain')

    @app.get('/background')
    async def background(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(slow_task)
        return {'queued': True}

    @app.get('/teapot')
    async def teapot() -> None:
        raise HTTPException(418)

    @app.get('/error')
    async def error() -> None:
        raise ValueError('something went wrong')

    app.include_router(router, prefix='/api')
    app.mount('/sub', sub)
    app.add_middleware(InfluxDBMiddleware, database=database)
    return app


app = make_app(os.environ.get('REQUEST_DATABASE', 'example'))
stats_file.export()


def main() -> None:
    """Serve the example with uvicorn until SIGTERM or SIGINT."""
    import uvicorn

    parser = argparse.ArgumentParser(description='FastAPI example app')
    parser.add_argument('--port', type=int, default=8000)
    arguments = parser.parse_args()
    config = uvicorn.Config(
        'integrations.fastapi_app:app',
        host='127.0.0.1',
        port=arguments.port,
        log_level='warning',
    )
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == '__main__':
    main()
