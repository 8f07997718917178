"""A small Tornado application whose every request is recorded.

Run it with ``python integrations/tornado_app.py --port 8000`` (the InfluxDB
server comes from the usual ``INFLUXDB_*`` variables; the database from
``REQUEST_DATABASE``, default ``example``).  It stops on SIGTERM or SIGINT,
calling :func:`sprockets_influxdb.shutdown` so that every request is
delivered.

Routes:

=====================================  ====================================
``GET /``                              a plain route
``GET /items/<item_id>``               a path parameter
``GET /api/users/<user_id>``           a rule inside a nested router
``GET /stream``                        three chunks, flushed 0.1 s apart
``GET /teapot``                        ``HTTPError(418)``
``GET /error``                         an uncaught exception (500)
``GET /stats`` on host ``admin.local`` a host-specific rule
anything else                          404 through ``NotFoundHandler``
=====================================  ====================================
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from tornado import ioloop, routing, web

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import sprockets_influxdb as influxdb  # noqa: E402
from integrations import stats_file  # noqa: E402
from sprockets_influxdb.tornado import NotFoundHandler  # noqa: E402


class Handler(influxdb.InfluxDBMixin, web.RequestHandler):
    """Base class of the example's handlers."""


class IndexHandler(Handler):
    def get(self) -> None:
        self.write({'hello': 'world'})


class ItemHandler(Handler):
    def get(self, item_id: str) -> None:
        self.influxdb.set_field('item_id', int(item_id))
        self.write({'item_id': int(item_id)})


class UserHandler(Handler):
    def get(self, user_id: str) -> None:
        self.write({'user_id': int(user_id)})


class StreamHandler(Handler):
    async def get(self) -> None:
        for number in range(3):
            self.write(f'chunk {number}\n')
            await self.flush()
            await asyncio.sleep(0.1)


class TeapotHandler(Handler):
    def get(self) -> None:
        raise web.HTTPError(418)


class ErrorHandler(Handler):
    def get(self) -> None:
        raise ValueError('something went wrong')


class StatsHandler(Handler):
    def get(self) -> None:
        self.write({'requests': 'many'})


def make_app(database: str = 'example', **settings: object) -> web.Application:
    """Build the example application.

    :param database: where request measurements are written
    :param settings: more Tornado application settings
    """
    app = web.Application(
        [
            (r'/', IndexHandler),
            (r'/items/(?P<item_id>\d+)', ItemHandler),
            (
                routing.PathMatches(r'/api/.*'),
                [(r'/api/users/(\d+)', UserHandler)],
            ),
            (r'/stream', StreamHandler),
            (r'/teapot', TeapotHandler),
            (r'/error', ErrorHandler),
        ],
        default_handler_class=NotFoundHandler,
        **{influxdb.REQUEST_DATABASE: database},
        **settings,
    )
    app.add_handlers(r'admin\.local', [(r'/stats', StatsHandler)])
    return app


async def serve(port: int) -> None:
    """Serve the example until SIGTERM or SIGINT, then deliver everything.

    :param port: the port to listen on, on 127.0.0.1
    """
    app = make_app(os.environ.get('REQUEST_DATABASE', 'example'))
    server = app.listen(port, address='127.0.0.1')
    influxdb.install(io_loop=ioloop.IOLoop.current())
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    print(f'listening on http://127.0.0.1:{port}', flush=True)
    await stopping.wait()
    server.stop()
    await influxdb.shutdown()


def main() -> None:
    """Run the example."""
    parser = argparse.ArgumentParser(description='Tornado example app')
    parser.add_argument('--port', type=int, default=8000)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    logging.getLogger('tornado.access').setLevel(logging.WARNING)
    stats_file.export()
    asyncio.run(serve(arguments.port))


if __name__ == '__main__':
    # Run the handlers from the module, not from __main__, so that the
    # ``handler`` tags read integrations.tornado_app.IndexHandler.
    from integrations import tornado_app

    tornado_app.main()
