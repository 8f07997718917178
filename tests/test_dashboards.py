"""The Grafana dashboard in ``dashboards/``: valid, and every query answers.

Each query is run the way Grafana runs it against InfluxDB 1.x: its macros
(``$timeFilter``, ``$__interval``, ``$__interval_ms``) and variables
replaced, regex variables escaped, against a real influxd holding request
metrics recorded by the WSGI middleware; each must give back series of the
shape its panel draws.
"""

from __future__ import annotations

import json
import os
import re
import typing

import flask
import pytest
from werkzeug.test import Client as WerkzeugClient

from sprockets_influxdb import Client
from sprockets_influxdb.wsgi import InfluxDBMiddleware
from tests.helpers import ROOT
from tests.servers import InfluxServer

DASHBOARD = os.path.join(ROOT, 'dashboards', 'requests-influxql.json')
MEASUREMENT = 'shop'
MACROS = {
    '$timeFilter': 'time > now() - 1h',
    '$__interval_ms': '10000',
    '$__interval': '10s',
}
VARIABLE_RE = re.compile(r'\$(\w+)')


def load() -> dict[str, typing.Any]:
    with open(DASHBOARD, encoding='utf-8') as file:
        return typing.cast(dict[str, typing.Any], json.load(file))


def regex_value(value: str) -> str:
    """A variable's value as Grafana writes it into an InfluxQL regex."""
    return re.sub(r'([\\^$.|?*+()\[\]{}/])', r'\\\1', value)


def substitute(query: str, variables: dict[str, str]) -> str:
    for macro, value in MACROS.items():
        query = query.replace(macro, value)
    query = query.replace('$measurement', variables.get('measurement', ''))
    for name, value in variables.items():
        query = query.replace(f'${name}', value)
    left = VARIABLE_RE.findall(query)
    assert left == [], f'unknown variables {left} in {query}'
    return query


@pytest.fixture(scope='module')
def stored(influxd_path: str) -> typing.Iterator[InfluxServer]:
    """An influxd holding the request metrics of a small shop."""
    with InfluxServer(executable=influxd_path) as server:
        server.create_database('requests')
        client = Client(server.url, environment='test')
        app = flask.Flask('shop')

        @app.route('/')
        def index() -> str:
            return 'home'

        @app.route('/items/<int:item_id>')
        def item(item_id: int) -> str:
            return 'item' * item_id

        @app.route('/boom')
        def boom() -> str:
            raise ValueError('boom')

        app.wsgi_app = InfluxDBMiddleware(  # type: ignore[method-assign]
            app.wsgi_app,
            database='requests',
            measurement=MEASUREMENT,
            client=client,
        )
        browser = WerkzeugClient(app)
        for index_ in range(200):
            browser.get('/')
            browser.get(f'/items/{index_ % 7}')
            if index_ % 10 == 0:
                browser.get('/missing')
                browser.get('/boom')
        assert client.shutdown(10).result() is True
        yield server


def series_of(server: InfluxServer, query: str) -> list[dict[str, typing.Any]]:
    payload = server.query(query, 'requests')
    (result,) = payload['results']
    assert 'error' not in result, (query, result)
    return typing.cast(list[dict[str, typing.Any]], result.get('series', []))


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = load()
    assert isinstance(dashboard['schemaVersion'], int)
    assert dashboard['schemaVersion'] >= 36  # Grafana 9 and later
    assert dashboard['uid']
    assert dashboard['title']
    ids = [panel['id'] for panel in dashboard['panels']]
    assert len(ids) == len(set(ids))
    names = {v['name'] for v in dashboard['templating']['list']}
    assert {'datasource', 'measurement', 'hostname', 'endpoint'} <= names
    for panel in dashboard['panels']:
        assert set(panel['gridPos']) == {'x', 'y', 'w', 'h'}
        assert panel['gridPos']['x'] + panel['gridPos']['w'] <= 24
        assert panel['datasource']['uid'] == '${datasource}'
        for target in panel['targets']:
            assert target['rawQuery'] is True
            used = set(VARIABLE_RE.findall(target['query']))
            macros = {'timeFilter', '__interval', '__interval_ms'}
            assert used <= names | macros, used - names - macros


@pytest.mark.parametrize('endpoint', ['.*', regex_value('/boom')])
def test_every_panel_query_answers(
    stored: InfluxServer, endpoint: str
) -> None:
    variables = {
        'measurement': MEASUREMENT,
        'hostname': '.*',
        'environment': regex_value('test'),
        'endpoint': endpoint,
    }
    for panel in load()['panels']:
        for target in panel['targets']:
            query = substitute(target['query'], variables)
            series = series_of(stored, query)
            assert series, (panel['title'], query)
            columns = series[0]['columns']
            values = [row for one in series for row in one['values']]
            assert values, (panel['title'], query)
            if target['resultFormat'] == 'table':
                assert {'p99', 'p50', 'requests'} <= set(columns)
                assert all('endpoint' in one['tags'] for one in series)
            else:
                assert columns[0] == 'time'
            for tag in re.findall(r'"(\w+)" fill|, "(\w+)"$', query):
                name = next(filter(None, tag))
                assert all(name in one.get('tags', {}) for one in series)
    # The 5xx panel sees the exception class of /boom.
    query = substitute(load()['panels'][-1]['targets'][0]['query'], variables)
    errors = {one['tags']['error'] for one in series_of(stored, query)}
    assert errors == {'builtins.ValueError'}


def test_every_variable_query_answers(stored: InfluxServer) -> None:
    variables = {'measurement': MEASUREMENT, 'hostname': '.*'}
    found = {}
    for variable in load()['templating']['list']:
        if variable['type'] != 'query':
            continue
        query = substitute(variable['query'], variables)
        series = series_of(stored, query)
        values = [row[-1] for one in series for row in one['values']]
        found[variable['name']] = set(values)
    assert MEASUREMENT in found['measurement']
    assert found['environment'] == {'test'}
    assert found['endpoint'] == {
        '/',
        '/items/<int:item_id>',
        '/boom',
        '<unmatched>',
    }
