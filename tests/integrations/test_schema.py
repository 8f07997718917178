"""One schema: the same logical requests served by Tornado, Starlette,
FastAPI and Flask give the same tags, apart from the endpoint syntax and the
handler.
"""

from __future__ import annotations

from tests.integrations.apps import AppServer
from tests.servers import InfluxServer

APPS = ['tornado_app', 'starlette_app', 'fastapi_app', 'flask_app']
REQUESTS = [
    ('GET', '/items/42'),
    ('GET', '/no/such/page'),
    ('GET', '/teapot'),
    ('GET', '/error'),
    ('DELETE', '/'),
]
# What differs by nature: the route syntax, the handler, the time, and
# the bodies (each framework writes its JSON and error pages its own way).
FRAMEWORK_SPECIFIC = {
    'endpoint',
    'handler',
    'time',
    'duration',
    'content_length',
}


def test_the_same_requests_give_the_same_tags(influxdb: InfluxServer) -> None:
    recorded: dict[str, list[dict[str, object]]] = {}
    for module in APPS:
        influxdb.create_database(module)
        app = AppServer(
            ['{python}', f'integrations/{module}.py', '--port', '{port}'],
            influxdb,
            module,
            env={'SERVICE': 'shop', 'ENVIRONMENT': 'test'},
        )
        try:
            lengths = [
                len(app.client.request(method, path).content)
                for method, path in REQUESTS
            ]
        finally:
            app.stop()
        # Each request has its own status: order the rows by request,
        # leaving out the readiness probe (GET /).
        order = ['200', '404', '418', '500', '405']
        rows = sorted(
            (
                row
                for row in influxdb.rows(module, 'shop')
                if (row['method'], row['endpoint']) != ('GET', '/')
            ),
            key=lambda row: order.index(str(row['status_code'])),
        )
        assert len(rows) == len(REQUESTS), module
        for row, length, (_, path) in zip(rows, lengths, REQUESTS):
            if path == '/error' and module in ('starlette_app', 'fastapi_app'):
                # Starlette's 500 page is sent outside the middleware.
                length = 0
            assert row['content_length'] == length, (module, path)
        recorded[module] = [
            {
                key: value
                for key, value in row.items()
                if key not in FRAMEWORK_SPECIFIC
            }
            for row in rows
        ]
    tornado, starlette, fastapi, flask = (recorded[module] for module in APPS)
    assert tornado == starlette == fastapi == flask
    statuses = [row['status_code'] for row in tornado]
    assert statuses == ['200', '404', '418', '500', '405']
    assert tornado[0]['item_id'] == 42
    assert tornado[3]['error'] == 'builtins.ValueError'
