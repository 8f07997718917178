"""The demo's HTML report, read back from a real influxd and looked at in
a real browser: headless Chromium renders it and the test checks every
chart is drawn, with the endpoints and status classes the server holds."""

from __future__ import annotations

import os
import shutil
import typing

import pytest
from playwright.sync_api import sync_playwright

from integrations import demo, report
from tests.helpers import ROOT, run_script
from tests.servers import InfluxServer

CHROMIUM = '/usr/bin/chromium'
CHROMIUM_MISSING = (
    'chromium is not installed: apt-get install chromium (or run '
    '.ci/bootstrap); the report test renders the HTML report in it'
)
CHROMIUM_ARGS = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
]
# Requests per example app, spread over this many seconds.
REQUESTS = 150
SECONDS = 2.0


@pytest.fixture(scope='session')
def chromium_path() -> str:
    """Debian's Chromium; fails the suite when it is missing."""
    path = (
        CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which('chromium')
    )
    if path is None:
        pytest.fail(CHROMIUM_MISSING, pytrace=False)
    return path


@pytest.fixture(scope='module')
def served(
    influxd_path: str,
) -> typing.Iterator[tuple[InfluxServer, tuple[int, int]]]:
    """An influxd holding what the demo's apps recorded, one database each
    (every app served as its own process, driven over HTTP at once), and
    when they were driven."""
    with InfluxServer(executable=influxd_path) as server:
        for name in demo.APPS:
            server.create_database(name)
        window = demo.serve_and_drive_all(
            lambda name: {'INFLUXDB_URL': server.url},
            REQUESTS,
            SECONDS,
            seed=3,
        )
        yield server, window


def stored_rows(
    server: InfluxServer, database: str, window: tuple[int, int]
) -> list[dict[str, object]]:
    """The requests the server holds from the time the apps were driven
    (the one that checked an app was up comes before)."""
    return [
        row
        for row in server.rows(database, 'request')
        if window[0] <= typing.cast(int, row['time']) <= window[1]
    ]


def render(
    path: str, chromium: str, profile: str, screenshot: str
) -> dict[str, typing.Any]:
    """Open the report in headless Chromium; return what it drew.

    Any request other than the file itself is refused and counted.
    """
    url = f'file://{path}'
    problems: list[str] = []
    fetched: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={'width': 1400, 'height': 900},
        )
        try:
            page = browser.new_page()
            page.on(
                'console',
                lambda message: (
                    problems.append(f'console: {message.text}')
                    if message.type in ('error', 'warning')
                    else None
                ),
            )
            page.on('pageerror', lambda error: problems.append(str(error)))

            def refuse(route: typing.Any) -> None:
                if route.request.url == url:
                    route.continue_()
                else:
                    fetched.append(route.request.url)
                    route.abort()

            page.route('**/*', refuse)
            page.goto(url, wait_until='load')
            page.wait_for_function(
                """() => {
                    const charts = document.querySelectorAll('.chart');
                    return charts.length > 0 && [...charts].every(
                        chart => chart.querySelector('.main-svg .legend'));
                }""",
                timeout=20_000,
            )
            drawn = page.evaluate(
                """() => [...document.querySelectorAll('.js-plotly-plot')]
                .map(chart => ({
                    id: chart.id,
                    svgs: chart.querySelectorAll('.main-svg').length,
                    title: chart.querySelector('.gtitle')?.textContent,
                    axisTitles: [...chart.querySelectorAll('text')]
                        .filter(node => /^[xy][0-9]*title$/.test(
                            node.getAttribute('class')))
                        .map(node => node.textContent),
                    subplotTitles: [...chart.querySelectorAll(
                        '.annotation-text')].map(node => node.textContent),
                    legend: [...chart.querySelectorAll('.legend .legendtext')]
                        .map(node => node.textContent),
                    lines: [...chart.querySelectorAll(
                        '.scatterlayer .trace')].map(trace => ({
                            markers: trace.querySelectorAll(
                                '.points path').length,
                            segments: [...trace.querySelectorAll(
                                'path.js-line')].map(line =>
                                (line.getAttribute('d').match(/L/g) || [])
                                    .length),
                        })),
                    bars: [...chart.querySelectorAll('.barlayer .trace')]
                        .map(trace => [...trace.querySelectorAll(
                            '.point path')].filter(bar => {
                                const box = bar.getBBox();
                                return box.width > 0 && box.height > 0;
                            }).length),
                    data: chart.data.map(trace => ({
                        name: trace.name,
                        x: trace.x,
                        y: trace.y,
                        orientation: trace.orientation || 'v',
                    })),
                }))"""
            )
            page.screenshot(path=screenshot, full_page=True)
        finally:
            browser.close()
    return {'charts': drawn, 'problems': problems, 'fetched': fetched}


def test_the_report_draws_every_chart(
    served: tuple[InfluxServer, tuple[int, int]],
    chromium_path: str,
    tmp_path: typing.Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, window = served
    path = str(tmp_path / 'report.html')
    written = demo.write_report(server, list(demo.APPS), path, window)
    said = capsys.readouterr().out
    # Without plotly (the report extra) there is no report: a failure.
    assert written == path, said
    assert f'and wrote {path}' in said
    # The InfluxQL it ran is printed, a database and a statement a line.
    for name in demo.APPS:
        assert f'[{name}] SELECT PERCENTILE("duration", 50)' in said
        assert f'[{name}] SELECT COUNT("duration") AS requests' in said
    with open(path, encoding='utf-8') as file:
        page = file.read()
    # One file: nothing is loaded from elsewhere.
    assert '<script src' not in page
    assert '<link' not in page

    screenshot = str(tmp_path / 'report.png')
    seen = render(
        path, chromium_path, str(tmp_path / 'chromium-profile'), screenshot
    )
    print(f'screenshot: {screenshot}')
    assert seen['problems'] == []
    assert seen['fetched'] == []
    assert os.path.getsize(screenshot) > 50_000

    charts = {chart['id']: chart for chart in seen['charts']}
    assert sorted(charts) == sorted(
        f'{kind}-{name}'
        for name in demo.APPS
        for kind in ('latency', 'status')
    )
    # Every section in buckets of the same width.
    widths = {interval_of(charts[f'status-{name}']) for name in demo.APPS}
    assert len(widths) == 1
    width = report.parse_interval(widths.pop())[0]
    for name in demo.APPS:
        rows = stored_rows(server, name, window)
        endpoints = {str(row['endpoint']) for row in rows}
        classes = {str(row['status_class']) for row in rows}
        assert len(rows) == REQUESTS
        assert {'2xx', '4xx', '5xx'} <= classes

        latency = charts[f'latency-{name}']
        assert latency['svgs'] > 0
        assert name in latency['title']
        assert 'p50 / p95 / p99' in latency['title']
        assert {
            'p50 duration (ms)',
            'p95 duration (ms)',
            'p99 duration (ms)',
            'time (UTC)',
        } <= set(latency['axisTitles'])
        # A legend entry per endpoint the server holds, and a line for
        # each of them in each of the three rows.
        assert sorted(latency['legend']) == sorted(endpoints)
        assert len(latency['lines']) == 3 * len(endpoints)
        assert all(line['markers'] > 0 for line in latency['lines'])
        assert {trace['name'] for trace in latency['data']} == endpoints
        # The busiest endpoints are lines over many buckets.
        assert (
            max(max(line['segments'], default=0) for line in latency['lines'])
            >= 5
        )

        status = charts[f'status-{name}']
        assert name in status['title']
        assert {'requests / s', 'time (UTC)', 'requests'} <= set(
            status['axisTitles']
        )
        assert sorted(status['legend']) == sorted(classes)
        assert len(status['bars']) == 2 * len(classes)
        assert all(bars > 0 for bars in status['bars'])
        # Drawn from what the server stored: the bars per endpoint and
        # status class are the requests it holds, and the rates over time
        # add up to them too.
        totals = {
            (endpoint, trace['name']): count
            for trace in status['data']
            if trace['orientation'] == 'h'
            for endpoint, count in zip(trace['y'], trace['x'])
            if count
        }
        expected: dict[tuple[str, str], int] = {}
        for row in rows:
            key = (str(row['endpoint']), str(row['status_class']))
            expected[key] = expected.get(key, 0) + 1
        assert totals == expected
        over_time = [
            trace for trace in status['data'] if trace['orientation'] == 'v'
        ]
        assert round(
            sum(sum(trace['y']) for trace in over_time) * width / 1000
        ) == len(rows)


def interval_of(status: dict[str, typing.Any]) -> str:
    """The bucket width named by a status chart's first subplot title."""
    prefix = 'requests per second (per '
    for text in status['subplotTitles']:
        if text.startswith(prefix):
            return str(text[len(prefix) : -1])
    raise AssertionError(f'no bucket width in {status["subplotTitles"]}')


def test_without_plotly_it_prints_the_tables_and_how_to_install_it(
    served: tuple[InfluxServer, tuple[int, int]], tmp_path: typing.Any
) -> None:
    server, _ = served
    output = tmp_path / 'report.html'
    result = run_script(
        """
        import runpy, sys
        sys.modules['plotly'] = None  # as if it were not installed
        sys.argv[0] = 'integrations/report.py'
        runpy.run_path('integrations/report.py', run_name='__main__')
        """,
        args=[
            '--url',
            server.url,
            '--database',
            'flask',
            '--database',
            'fastapi',
            '--measurement',
            'request',
            '--last',
            '1h',
            '--output',
            str(output),
        ],
        cwd=ROOT,
    )
    assert result.returncode == 2, result.stderr
    assert "pip install -e '.[report]'" in result.stderr
    assert not output.exists()
    # The tables and the InfluxQL are printed all the same.
    for name in ('flask', 'fastapi'):
        assert f'{name} (request):' in result.stdout
        assert f'[{name}] SELECT COUNT("duration")' in result.stdout
        for row in server.rows(name, 'request'):
            assert f'\n{row["endpoint"]} ' in result.stdout
