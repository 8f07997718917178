"""A small Flask application whose every request is recorded.

Serve it with gunicorn, as in production:
``gunicorn --preload --workers 2 integrations.flask_app:app``, or with
``python integrations/flask_app.py --port 8000`` (gunicorn, two workers,
``--preload``).  The InfluxDB server comes from the usual ``INFLUXDB_*``
variables, the database from ``REQUEST_DATABASE`` (default ``example``).
Each worker delivers what it recorded when it exits (the library's exit
hooks), whatever the order in which gunicorn stops them.

Routes:

====================================  ===================================
``GET /``                             a plain route
``GET /items/<int:item_id>``          a path parameter
``GET /api/users/<user_id>``          a route of a blueprint at /api
``GET /stream``                       three chunks, 0.1 s apart
``GET /source``                       this file, through wsgi.file_wrapper
``GET /teapot``                       ``abort(418)``
``GET /error``                        an uncaught exception (500)
anything else                         404
====================================  ===================================
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, abort, request, send_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import sprockets_influxdb  # noqa: E402
from integrations import stats_file  # noqa: E402
from sprockets_influxdb.wsgi import ENVIRON_KEY, InfluxDBMiddleware  # noqa: E402

# Optional (the first request would configure the library from the
# environment); configuring starts no thread, so the workers forked from a
# --preload master start their own writers.
sprockets_influxdb.install()

api = Blueprint('api', __name__)


@api.get('/users/<user_id>')
def user(user_id: str) -> dict[str, str]:
    return {'user_id': user_id}


def homepage() -> dict[str, str]:
    return {'hello': 'world'}


def item(item_id: int) -> dict[str, int]:
    request.environ[ENVIRON_KEY].set_field('item_id', item_id)
    return {'item_id': item_id}


def stream() -> Response:
    def chunks() -> Iterator[str]:
        for number in range(3):
            yield f'chunk {number}\n'
            time.sleep(0.1)

    return Response(chunks(), mimetype='text/plain')


def source() -> Response:
    # Sent by the server's wsgi.file_wrapper (gunicorn: sendfile).
    return send_file(__file__, mimetype='text/plain')


def teapot() -> None:
    abort(418)


def error() -> None:
    raise ValueError('something went wrong')


def make_app(database: str = 'example') -> Flask:
    """Build the example application.

    :param database: where request measurements are written
    """
    app = Flask(__name__)
    app.add_url_rule('/', view_func=homepage)
    app.add_url_rule('/items/<int:item_id>', view_func=item)
    app.add_url_rule('/stream', view_func=stream)
    app.add_url_rule('/source', view_func=source)
    app.add_url_rule('/teapot', view_func=teapot)
    app.add_url_rule('/error', view_func=error)
    app.register_blueprint(api, url_prefix='/api')
    app.wsgi_app = InfluxDBMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, database=database
    )
    return app


app = make_app(os.environ.get('REQUEST_DATABASE', 'example'))
stats_file.export()


def main() -> None:
    """Serve the example with gunicorn until SIGTERM or SIGINT."""
    from gunicorn.app.base import BaseApplication

    from sprockets_influxdb.wsgi import post_worker_init

    logging.basicConfig(
        level=logging.INFO, format='[%(process)d] %(name)s %(message)s'
    )
    parser = argparse.ArgumentParser(description='Flask example app')
    parser.add_argument('--port', type=int, default=8000)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--worker-class', default='sync')
    parser.add_argument('--threads', type=int, default=1)
    arguments = parser.parse_args()

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set('bind', f'127.0.0.1:{arguments.port}')
            self.cfg.set('workers', arguments.workers)
            self.cfg.set('worker_class', arguments.worker_class)
            self.cfg.set('threads', arguments.threads)
            self.cfg.set('preload_app', True)
            self.cfg.set('post_worker_init', post_worker_init)
            self.cfg.set('loglevel', 'warning')

        def load(self) -> Any:
            from integrations import flask_app

            return flask_app.app

    Server().run()


if __name__ == '__main__':
    main()
