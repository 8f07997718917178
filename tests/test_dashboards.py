"""The Grafana dashboards in ``dashboards/``: valid, every query answers.

Each query is run the way Grafana runs it, against InfluxDB 1.x
(InfluxQL) and VictoriaMetrics (MetricsQL): its macros
(``$timeFilter``, ``$__interval``, ``$__interval_ms``) and variables
replaced, regex variables escaped, against a real influxd holding request
metrics recorded by the WSGI middleware (and a real VictoriaMetrics); each
must give back series of the shape its panel draws.
"""

from __future__ import annotations

import json
import os
import re
import time
import typing

import flask
import httpx
import pytest
from werkzeug.test import Client as WerkzeugClient

from sprockets_influxdb import Client
from sprockets_influxdb.wsgi import InfluxDBMiddleware
from tests.helpers import ROOT
from tests.servers import InfluxServer, VictoriaServer

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


def shop(client: Client) -> flask.Flask:
    """A small shop whose requests *client* records."""
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
    return app


def drive(browser: WerkzeugClient) -> None:
    for index in range(200):
        browser.get('/')
        browser.get(f'/items/{index % 7}')
        if index % 10 == 0:
            browser.get('/missing')
            browser.get('/boom')


@pytest.fixture(scope='module')
def stored(influxd_path: str) -> typing.Iterator[InfluxServer]:
    """An influxd holding the request metrics of a small shop."""
    with InfluxServer(executable=influxd_path) as server:
        server.create_database('requests')
        client = Client(server.url, environment='test')
        drive(WerkzeugClient(shop(client)))
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


# -- VictoriaMetrics (MetricsQL) ---------------------------------------------

VM_DASHBOARD = os.path.join(
    ROOT, 'dashboards', 'requests-victoriametrics.json'
)
VM_MACROS = {
    '$__interval_ms': '10000',
    '$__interval': '10s',
    '$__range': '1h',
    '${measurement}': MEASUREMENT,
}


def vm_substitute(expression: str, variables: dict[str, str]) -> str:
    for macro, value in VM_MACROS.items():
        expression = expression.replace(macro, value)
    for name, value in variables.items():
        expression = expression.replace(f'${name}', value)
    left = VARIABLE_RE.findall(expression)
    assert left == [], f'unknown variables {left} in {expression}'
    return expression


def vm_query(
    server: VictoriaServer, expression: str, instant: bool
) -> list[dict[str, typing.Any]]:
    """Run a MetricsQL query; wait a little for fresh samples.

    The samples are seconds old, and VictoriaMetrics leaves the last 30 s
    out of a query at "now": the queries end a minute later.
    """
    now = time.time()
    if instant:
        path = '/api/v1/query'
        params = {'query': expression, 'time': now + 60}
    else:
        path = '/api/v1/query_range'
        params = {
            'query': expression,
            'start': now - 3600,
            'end': now + 60,
            'step': 10,
        }
    deadline = time.monotonic() + 15
    while True:
        response = httpx.get(server.url + path, params=params, timeout=10)
        assert response.status_code == 200, (expression, response.text)
        payload = response.json()
        assert payload['status'] == 'success', (expression, payload)
        result = typing.cast(
            list[dict[str, typing.Any]], payload['data']['result']
        )
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.25)


@pytest.fixture(scope='module')
def vm_stored(victoria_path: str) -> typing.Iterator[VictoriaServer]:
    """A VictoriaMetrics holding the same shop's request metrics."""
    with VictoriaServer(executable=victoria_path) as server:
        client = Client(server.url, environment='test')
        browser = WerkzeugClient(shop(client))
        drive(browser)
        assert client.shutdown(10).result() is True
        server.flush()
        yield server


def promql_regex_value(value: str) -> str:
    """A variable's value as Grafana writes it into a PromQL regex."""
    return re.sub(r'([\\^$.|?*+()\[\]{}])', r'\\\\\1', value)


@pytest.mark.parametrize('endpoint', ['.*', promql_regex_value('/boom')])
def test_every_victoriametrics_panel_query_answers(
    vm_stored: VictoriaServer, endpoint: str
) -> None:
    with open(VM_DASHBOARD, encoding='utf-8') as file:
        dashboard = json.load(file)
    variables = {'hostname': '.*', 'environment': 'test', 'endpoint': endpoint}
    for panel in dashboard['panels']:
        for target in panel['targets']:
            expression = vm_substitute(target['expr'], variables)
            result = vm_query(vm_stored, expression, target['instant'])
            assert result, (panel['title'], expression)
            for one in result:
                values = one.get('values') or [one['value']]
                assert all(float(value) >= 0 for _, value in values)
            legend = re.findall(r'\{\{(\w+)\}\}', target['legendFormat'])
            for name in legend:
                assert all(name in one['metric'] for one in result)
    expression = vm_substitute(
        dashboard['panels'][-1]['targets'][0]['expr'], variables
    )
    errors = {
        one['metric']['error']
        for one in vm_query(vm_stored, expression, False)
    }
    assert errors == {'builtins.ValueError'}


def test_every_victoriametrics_variable_query_answers(
    vm_stored: VictoriaServer,
) -> None:
    with open(VM_DASHBOARD, encoding='utf-8') as file:
        dashboard = json.load(file)
    found = {}
    for variable in dashboard['templating']['list']:
        if variable['type'] != 'query':
            continue
        query = vm_substitute(variable['query']['query'], {'hostname': '.*'})
        match = re.fullmatch(r'label_values\((.+), (\w+)\)', query)
        assert match, query
        selector, label = match.groups()
        response = httpx.get(
            f'{vm_stored.url}/api/v1/label/{label}/values',
            params={'match[]': selector},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        values = set(response.json()['data'])
        if variable['regex']:
            pattern = variable['regex'].strip('/')
            values = {
                m.group(1)
                for m in map(re.compile(pattern).fullmatch, values)
                if m
            }
        found[variable['name']] = values
    assert found['measurement'] == {MEASUREMENT}
    assert found['environment'] == {'test'}
    assert found['endpoint'] == {
        '/',
        '/items/<int:item_id>',
        '/boom',
        '<unmatched>',
    }


# -- InfluxDB 3 (SQL) --------------------------------------------------------

SQL_DASHBOARD = os.path.join(ROOT, 'dashboards', 'requests-influxdb3-sql.json')
SQL_MACROS = {
    '$__timeFilter(time)': "time >= now() - INTERVAL '1 hour'",
    '$__dateBin(time)': "date_bin(INTERVAL '10 seconds', time)",
    '$__interval_ms': '10000',
    '${measurement}': MEASUREMENT,
    # DataFusion's default schema; InfluxDB 3 names its own "iox".
    "table_schema = 'iox'": "table_schema = 'public'",
}


def sql_substitute(query: str, variables: dict[str, str]) -> str:
    for macro, value in SQL_MACROS.items():
        query = query.replace(macro, value)
    for name, value in variables.items():
        query = query.replace(f'${name}', value)
    left = VARIABLE_RE.findall(query)
    assert left == [], f'unknown variables {left} in {query}'
    return query


@pytest.fixture(scope='module')
def sql_engine(stored: InfluxServer) -> typing.Any:
    """The stored rows in DataFusion, the query engine of InfluxDB 3.

    No InfluxDB 3 server can be installed here: its SQL engine, with the
    rows as InfluxDB 3 would hold them (one table per measurement, tags
    and fields as columns, ``time`` a timestamp), stands in for it.
    """
    import datafusion
    import pyarrow

    payload = stored.query(f'SELECT * FROM {MEASUREMENT}', 'requests', 'ns')
    (series,) = payload['results'][0]['series']
    columns = series['columns']
    rows = series['values']
    arrays = {}
    for index, name in enumerate(columns):
        values = [row[index] for row in rows]
        if name == 'time':
            arrays[name] = pyarrow.array(values, pyarrow.timestamp('ns'))
        elif name == 'duration':
            arrays[name] = pyarrow.array(values, pyarrow.float64())
        elif name == 'content_length':
            arrays[name] = pyarrow.array(values, pyarrow.int64())
        else:
            arrays[name] = pyarrow.array(values, pyarrow.string())
    table = pyarrow.table(arrays)
    config = datafusion.SessionConfig().with_information_schema(True)
    context = datafusion.SessionContext(config)
    context.register_record_batches(MEASUREMENT, [table.to_batches()])
    return context


@pytest.mark.parametrize('endpoint', ['.*', promql_regex_value('/boom')])
def test_every_sql_panel_query_answers(
    sql_engine: typing.Any, endpoint: str
) -> None:
    with open(SQL_DASHBOARD, encoding='utf-8') as file:
        dashboard = json.load(file)
    variables = {'hostname': '.*', 'environment': 'test', 'endpoint': endpoint}
    for panel in dashboard['panels']:
        for target in panel['targets']:
            query = sql_substitute(target['rawSql'], variables)
            rows = sql_engine.sql(query).to_pylist()
            assert rows, (panel['title'], query)
            if target['format'] == 'table':
                assert {'endpoint', 'p99', 'p50', 'requests'} <= set(rows[0])
            else:
                assert 'time' in rows[0]
    query = sql_substitute(
        dashboard['panels'][-1]['targets'][0]['rawSql'], variables
    )
    errors = {row['error'] for row in sql_engine.sql(query).to_pylist()}
    assert errors == {'builtins.ValueError'}


def test_every_sql_variable_query_answers(sql_engine: typing.Any) -> None:
    with open(SQL_DASHBOARD, encoding='utf-8') as file:
        dashboard = json.load(file)
    found = {}
    for variable in dashboard['templating']['list']:
        if variable['type'] != 'query':
            continue
        query = sql_substitute(variable['query'], {'hostname': '.*'})
        rows = sql_engine.sql(query).to_pylist()
        found[variable['name']] = {next(iter(row.values())) for row in rows}
    assert found['measurement'] == {MEASUREMENT}
    assert found['environment'] == {'test'}
    assert found['endpoint'] == {
        '/',
        '/items/<int:item_id>',
        '/boom',
        '<unmatched>',
    }
