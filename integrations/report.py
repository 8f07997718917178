"""An HTML report of the request metrics an InfluxDB server holds.

For each database (the demo keeps one per framework), it asks the server,
with InfluxQL, for the duration percentiles p50, p95 and p99 of every
endpoint over time, the requests per second by status class over time and
the totals per endpoint, and writes one self-contained HTML file (the
plotting library's JavaScript inlined: no server, no network) with a
table and two charts per database.  The charts are drawn with plotly, the
optional ``report`` extra (``pip install -e '.[report]'`` in a clone).

``bash .ci/demo`` writes one; for a server of your own::

    python integrations/report.py --url http://localhost:8086 \\
        --database example --output report.html

(``INFLUXDB_USER`` and ``INFLUXDB_PASSWORD`` are used when set).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import html
import math
import os
import sys
import time
import typing
from typing import Any

if typing.TYPE_CHECKING:
    from collections.abc import Sequence

#: Runs one InfluxQL statement in a database and returns the decoded JSON
#: answer of ``/query`` (the demo and the tests pass the query method of
#: their throwaway server; the command line its own HTTP GET).
Query = typing.Callable[[str, str], dict[str, Any]]

INSTALL_HINT = (
    'The HTML report is drawn with plotly, the optional "report" extra. '
    'Install it with\n'
    "    pip install -e '.[report]'    (in a clone of sprockets-influxdb)\n"
    "or  pip install 'plotly>=5'\n"
    'or run the demo with "bash .ci/demo", which installs it.'
)

#: The widths of a time bucket the report chooses from (the narrowest
#: that gives at most MAX_BUCKETS buckets over the time range).
INTERVALS: tuple[tuple[int, str], ...] = (
    (100, '100ms'),
    (200, '200ms'),
    (250, '250ms'),
    (500, '500ms'),
    (1_000, '1s'),
    (2_000, '2s'),
    (5_000, '5s'),
    (10_000, '10s'),
    (15_000, '15s'),
    (30_000, '30s'),
    (60_000, '1m'),
    (300_000, '5m'),
    (900_000, '15m'),
    (1_800_000, '30m'),
    (3_600_000, '1h'),
    (10_800_000, '3h'),
    (21_600_000, '6h'),
    (43_200_000, '12h'),
    (86_400_000, '1d'),
    (604_800_000, '7d'),
)
MAX_BUCKETS = 30

PERCENTILES = (50, 95, 99)

STATUS_COLOURS = {
    '1xx': '#7f7f7f',
    '2xx': '#2ca02c',
    '3xx': '#1f77b4',
    '4xx': '#ff7f0e',
    '5xx': '#d62728',
}
ENDPOINT_COLOURS = (
    '#1f77b4',
    '#ff7f0e',
    '#2ca02c',
    '#d62728',
    '#9467bd',
    '#8c564b',
    '#e377c2',
    '#7f7f7f',
    '#bcbd22',
    '#17becf',
)


class ReportError(Exception):
    """The report cannot be made (no data, a failed query)."""


class PlotlyMissingError(ReportError):
    """plotly, the optional ``report`` extra, is not installed."""

    def __init__(self) -> None:
        super().__init__(INSTALL_HINT)


@dataclasses.dataclass
class Summary:
    """One endpoint over the whole time range."""

    requests: int
    percentiles: tuple[float, float, float]
    """p50, p95 and p99 of the duration, in seconds."""
    status_classes: dict[str, int]


@dataclasses.dataclass
class Section:
    """What one database holds: the data of its table and charts."""

    database: str
    measurement: str
    start_ms: int
    """The time of the first point, in milliseconds since the epoch."""
    end_ms: int
    """The time of the last point, in milliseconds since the epoch."""
    interval: str
    """The width of a time bucket, as InfluxQL writes it."""
    interval_ms: int
    buckets: list[int]
    """The start of every time bucket, in milliseconds since the epoch."""
    latency: dict[str, dict[int, list[float | None]]]
    """Per endpoint and percentile, the duration (s) of each bucket."""
    rates: dict[str, list[float]]
    """Per status class, the requests per second of each bucket."""
    summary: dict[str, Summary]


@dataclasses.dataclass
class Report:
    """The sections of the report and the InfluxQL that filled them."""

    sections: list[Section]
    queries: list[tuple[str, str]]
    """Each statement run, with its database."""


def quote_ident(name: str) -> str:
    """*name* as an InfluxQL identifier."""
    escaped = name.replace('\\', '\\\\').replace('"', '\\"')
    return f'"{escaped}"'


def choose_interval(span_ms: int) -> tuple[int, str]:
    """The narrowest bucket width giving at most MAX_BUCKETS buckets."""
    for width, name in INTERVALS:
        if span_ms // width + 1 <= MAX_BUCKETS:
            return width, name
    return INTERVALS[-1]


def parse_interval(text: str) -> tuple[int, str]:
    """An InfluxQL duration (``250ms``, ``1s``, ``5m``) in milliseconds."""
    units = {'ms': 1, 's': 1_000, 'm': 60_000, 'h': 3_600_000}
    units['d'] = 24 * units['h']
    units['w'] = 7 * units['d']
    for unit in ('ms', 's', 'm', 'h', 'd', 'w'):
        number = text[: -len(unit)]
        if text.endswith(unit) and number.isdigit() and int(number) > 0:
            return int(number) * units[unit], text
    raise ValueError(
        f'interval {text!r}: expected a positive whole number of ms, s, m, '
        'h, d or w (e.g. 250ms, 1s, 5m)'
    )


class _Collector:
    """Runs the report's statements, keeping each for the record."""

    def __init__(self, query: Query) -> None:
        self._query = query
        self.queries: list[tuple[str, str]] = []

    def series(self, statement: str, database: str) -> list[dict[str, Any]]:
        self.queries.append((database, statement))
        try:
            answer = self._query(statement, database)
        except Exception as error:
            raise ReportError(
                f'{statement!r} in database {database!r} failed: {error}'
            ) from error
        results = answer.get('results') or [{}]
        if 'error' in results[0]:
            raise ReportError(
                f'{statement!r} in database {database!r} failed: '
                f'{results[0]["error"]}'
            )
        found: list[dict[str, Any]] = results[0].get('series', [])
        return found

    def bounds(
        self, database: str, measurement: str, window: str
    ) -> tuple[int, int] | None:
        """The times (ms) of the first and the last request, if any."""
        source = quote_ident(measurement)
        found = []
        for selector in ('FIRST', 'LAST'):
            series = self.series(
                f'SELECT {selector}("duration") FROM {source}{window}',
                database,
            )
            if not series:
                return None
            found.append(int(series[0]['values'][0][0]))
        return found[0], found[1]

    def section(
        self,
        database: str,
        measurement: str,
        span: tuple[int, int],
        interval: tuple[int, str],
    ) -> Section:
        source = quote_ident(measurement)
        start_ms, end_ms = span
        width, name = interval
        where = f'WHERE time >= {start_ms}ms AND time < {end_ms + 1}ms'
        percentiles = ', '.join(
            f'PERCENTILE("duration", {p}) AS p{p}' for p in PERCENTILES
        )
        first_bucket = start_ms - start_ms % width
        buckets = list(range(first_bucket, end_ms + 1, width))
        position = {bucket: index for index, bucket in enumerate(buckets)}

        latency: dict[str, dict[int, list[float | None]]] = {}
        for series in self.series(
            f'SELECT {percentiles} FROM {source} {where} '
            f'GROUP BY time({name}), "endpoint" fill(null)',
            database,
        ):
            endpoint = series.get('tags', {}).get('endpoint') or '(none)'
            lines: dict[int, list[float | None]] = {
                p: [None] * len(buckets) for p in PERCENTILES
            }
            for row in series['values']:
                index = position.get(int(row[0]))
                if index is None:
                    continue
                for column, p in enumerate(PERCENTILES, start=1):
                    lines[p][index] = row[column]
            latency[endpoint] = lines

        rates: dict[str, list[float]] = {}
        for series in self.series(
            f'SELECT COUNT("duration") AS requests FROM {source} {where} '
            f'GROUP BY time({name}), "status_class" fill(0)',
            database,
        ):
            status_class = series.get('tags', {}).get('status_class')
            counts = [0.0] * len(buckets)
            for stamp, requests in series['values']:
                index = position.get(int(stamp))
                if index is not None:
                    counts[index] = requests * 1000 / width
            rates[status_class or '(none)'] = counts

        summary: dict[str, Summary] = {}
        for series in self.series(
            f'SELECT COUNT("duration") AS requests, {percentiles} '
            f'FROM {source} {where} GROUP BY "endpoint"',
            database,
        ):
            endpoint = series.get('tags', {}).get('endpoint') or '(none)'
            _, requests, *values = series['values'][0]
            p50, p95, p99 = (float(value) for value in values)
            summary[endpoint] = Summary(int(requests), (p50, p95, p99), {})
        for series in self.series(
            f'SELECT COUNT("duration") AS requests FROM {source} {where} '
            'GROUP BY "endpoint", "status_class"',
            database,
        ):
            tags = series.get('tags', {})
            endpoint = tags.get('endpoint') or '(none)'
            if endpoint in summary:
                status_class = tags.get('status_class') or '(none)'
                summary[endpoint].status_classes[status_class] = int(
                    series['values'][0][1]
                )
        return Section(
            database=database,
            measurement=measurement,
            start_ms=start_ms,
            end_ms=end_ms,
            interval=name,
            interval_ms=width,
            buckets=buckets,
            latency=dict(sorted(latency.items())),
            rates=dict(sorted(rates.items())),
            summary=dict(sorted(summary.items())),
        )


def collect(
    query: Query,
    databases: Sequence[str],
    measurement: str = 'request',
    interval: str | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> Report:
    """Ask the server for the data of the report, one section a database.

    Every section covers the same time (from the first request to the
    last one of all the databases) in buckets of the same width.

    :param query: runs an InfluxQL statement in a database and returns
        the decoded JSON answer
    :param databases: the databases, one section each, in this order
    :param measurement: the measurement the requests are recorded as
    :param interval: the width of a time bucket (``250ms``, ``1s``, ...);
        by default the narrowest giving at most 30 buckets
    :param start_ms: leave out the requests before this time
        (milliseconds since the epoch)
    :param end_ms: leave out the requests after this time
    :raises ReportError: a query failed, or a database holds no requests
    :raises ValueError: *interval* is not an InfluxQL duration
    """
    chosen = None if interval is None else parse_interval(interval)
    limits = []
    if start_ms is not None:
        limits.append(f'time >= {start_ms}ms')
    if end_ms is not None:
        limits.append(f'time < {end_ms + 1}ms')
    window = f' WHERE {" AND ".join(limits)}' if limits else ''
    collector = _Collector(query)
    spans = []
    for database in databases:
        span = collector.bounds(database, measurement, window)
        if span is None:
            raise ReportError(
                f'no {measurement!r} points with a duration in database '
                f'{database!r}' + (' at that time' if limits else '')
            )
        spans.append(span)
    first = min(span[0] for span in spans)
    last = max(span[1] for span in spans)
    if chosen is None:
        chosen = choose_interval(last - first)
    sections = [
        collector.section(database, measurement, (first, last), chosen)
        for database in databases
    ]
    return Report(sections, collector.queries)


def timestamp(milliseconds: int) -> str:
    """Milliseconds since the epoch as a UTC date and time."""
    moment = datetime.datetime.fromtimestamp(
        milliseconds / 1000, tz=datetime.timezone.utc
    )
    return moment.strftime('%Y-%m-%d %H:%M:%S.') + f'{milliseconds % 1000:03d}'


def format_table(section: Section) -> str:
    """The section's totals per endpoint, as plain text."""
    header = (
        f'{"endpoint":<26} {"requests":>8}  {"p50 ms":>7} {"p95 ms":>7} '
        f'{"p99 ms":>7}  status classes'
    )
    lines = [header, '-' * len(header)]
    for endpoint, summary in section.summary.items():
        p50, p95, p99 = (value * 1000 for value in summary.percentiles)
        classes = ', '.join(
            f'{name}: {number}'
            for name, number in sorted(summary.status_classes.items())
        )
        lines.append(
            f'{endpoint:<26} {summary.requests:>8}  {p50:>7.1f} {p95:>7.1f} '
            f'{p99:>7.1f}  {classes}'
        )
    return '\n'.join(lines)


def format_queries(report: Report) -> str:
    """The InfluxQL the report ran, one statement a line."""
    return '\n'.join(
        f'[{database}] {statement}' for database, statement in report.queries
    )


def _plotly() -> Any:
    """The plotly package; PlotlyMissingError when it is not installed."""
    try:
        import plotly.graph_objects  # type: ignore[import-untyped]
        import plotly.offline  # type: ignore[import-untyped]
        import plotly.subplots  # type: ignore[import-untyped]
    except ImportError as error:
        raise PlotlyMissingError() from error
    return plotly


def latency_figure(section: Section, plotly: Any) -> Any:
    """Duration percentiles per endpoint over time: one row a percentile."""
    go = plotly.graph_objects
    figure = plotly.subplots.make_subplots(
        rows=len(PERCENTILES),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
    )
    times = [timestamp(bucket) for bucket in section.buckets]
    for number, (endpoint, lines) in enumerate(section.latency.items()):
        colour = ENDPOINT_COLOURS[number % len(ENDPOINT_COLOURS)]
        for row, p in enumerate(PERCENTILES, start=1):
            figure.add_trace(
                go.Scatter(
                    x=times,
                    y=[
                        None if value is None else value * 1000
                        for value in lines[p]
                    ],
                    name=endpoint,
                    legendgroup=endpoint,
                    showlegend=row == 1,
                    mode='lines+markers',
                    line={'color': colour, 'width': 1.5},
                    marker={'color': colour, 'size': 4},
                    hovertemplate=(
                        # The name as data, never as template or markup.
                        f'%{{fullData.name}}<br>p{p}: %{{y:.3g}} ms<br>'
                        '%{x}<extra></extra>'
                    ),
                ),
                row=row,
                col=1,
            )
    # One range for the three rows, so that they compare at a glance.
    drawn = [
        value * 1000
        for lines in section.latency.values()
        for values in lines.values()
        for value in values
        if value is not None and value > 0
    ]
    shown = (
        [math.log10(min(drawn) / 1.5), math.log10(max(drawn) * 1.5)]
        if drawn
        else None
    )
    for row, p in enumerate(PERCENTILES, start=1):
        figure.update_yaxes(
            title_text=f'p{p} duration (ms)',
            type='log',
            range=shown,
            row=row,
            col=1,
        )
    figure.update_xaxes(title_text='time (UTC)', row=len(PERCENTILES), col=1)
    figure.update_layout(
        title={
            'text': (
                f'{section.database}: request duration per endpoint, '
                f'p50 / p95 / p99 per {section.interval} (log scale)'
            )
        },
        height=720,
        legend={'title': {'text': 'endpoint'}},
        margin={'t': 70, 'r': 20},
        template='plotly_white',
    )
    return figure


def status_figure(section: Section, plotly: Any) -> Any:
    """Requests per second by status class over time, and per endpoint."""
    go = plotly.graph_objects
    figure = plotly.subplots.make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.62, 0.38],
        horizontal_spacing=0.2,
        subplot_titles=(
            f'requests per second (per {section.interval})',
            'requests per endpoint (in all)',
        ),
    )
    times = [timestamp(bucket) for bucket in section.buckets]
    classes = sorted(
        {
            *section.rates,
            *(
                name
                for summary in section.summary.values()
                for name in summary.status_classes
            ),
        }
    )
    endpoints = list(section.summary)
    for status_class in classes:
        colour = STATUS_COLOURS.get(status_class, '#bcbd22')
        figure.add_trace(
            go.Bar(
                x=times,
                y=section.rates.get(status_class, [0.0] * len(times)),
                name=status_class,
                legendgroup=status_class,
                marker={'color': colour},
                hovertemplate=(
                    '%{fullData.name}: %{y:.1f} requests/s<br>%{x}'
                    '<extra></extra>'
                ),
            ),
            row=1,
            col=1,
        )
        figure.add_trace(
            go.Bar(
                y=endpoints,
                x=[
                    section.summary[endpoint].status_classes.get(
                        status_class, 0
                    )
                    for endpoint in endpoints
                ],
                orientation='h',
                name=status_class,
                legendgroup=status_class,
                showlegend=False,
                marker={'color': colour},
                hovertemplate=(
                    '%{y}<br>%{fullData.name}: %{x} requests<extra></extra>'
                ),
            ),
            row=1,
            col=2,
        )
    figure.update_xaxes(title_text='time (UTC)', row=1, col=1)
    figure.update_yaxes(title_text='requests / s', row=1, col=1)
    figure.update_xaxes(title_text='requests', row=1, col=2)
    figure.update_yaxes(autorange='reversed', row=1, col=2)
    figure.update_layout(
        title={'text': f'{section.database}: requests by status class'},
        barmode='stack',
        bargap=0.1,
        height=420,
        legend={'title': {'text': 'status class'}},
        margin={'t': 90, 'r': 20},
        template='plotly_white',
    )
    return figure


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em 2em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #ccc; }
p.source { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.8em 0; }
th, td { padding: 0.2em 0.8em; border-bottom: 1px solid #e4e4e4; }
th { text-align: left; background: #f4f4f4; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto;
      font-size: 0.85em; }
.chart { margin: 1em 0; }
"""


def _html_table(section: Section) -> str:
    rows = []
    for endpoint, summary in section.summary.items():
        classes = ', '.join(
            f'{name}: {number}'
            for name, number in sorted(summary.status_classes.items())
        )
        cells = ''.join(
            f'<td class="number">{value * 1000:.1f}</td>'
            for value in summary.percentiles
        )
        rows.append(
            f'<tr><td><code>{html.escape(endpoint)}</code></td>'
            f'<td class="number">{summary.requests}</td>{cells}'
            f'<td>{html.escape(classes)}</td></tr>'
        )
    return (
        '<table><thead><tr><th>endpoint</th><th>requests</th>'
        '<th>p50 ms</th><th>p95 ms</th><th>p99 ms</th>'
        '<th>status classes</th></tr></thead><tbody>'
        + ''.join(rows)
        + '</tbody></table>'
    )


def render_html(report: Report, source: str) -> str:
    """The report as one HTML page, plotly's JavaScript included.

    :param source: where the data comes from (shown under the title)
    :raises PlotlyMissingError: plotly is not installed
    """
    plotly = _plotly()
    config = {'displaylogo': False, 'responsive': True}
    parts = [
        '<!DOCTYPE html>',
        '<html lang="en"><head><meta charset="utf-8">',
        '<title>Request metrics report</title>',
        f'<style>{STYLE}</style>',
        '<script type="text/javascript">',
        plotly.offline.get_plotlyjs(),
        '</script>',
        '</head><body>',
        '<h1>Request metrics</h1>',
        f'<p class="source">{html.escape(source)}; times in UTC. Hover a '
        'chart for values, click a legend entry to hide a line, drag to '
        'zoom, double-click to zoom out.</p>',
    ]
    links = [
        f'<a href="#{html.escape(section.database)}">'
        f'{html.escape(section.database)}</a>'
        for section in report.sections
    ]
    links.append('<a href="#influxql">the InfluxQL</a>')
    parts.append(f'<p>Sections: {" · ".join(links)}</p>')
    for section in report.sections:
        parts.append(
            f'<h2 id="{html.escape(section.database)}">'
            f'{html.escape(section.database)}</h2>'
        )
        parts.append(
            f'<p>Measurement <code>{html.escape(section.measurement)}</code>'
            f' from {timestamp(section.start_ms)} to '
            f'{timestamp(section.end_ms)}, in buckets of '
            f'{section.interval}.</p>'
        )
        parts.append(_html_table(section))
        for kind, figure in (
            ('latency', latency_figure(section, plotly)),
            ('status', status_figure(section, plotly)),
        ):
            parts.append(
                '<div class="chart">'
                + figure.to_html(
                    full_html=False,
                    include_plotlyjs=False,
                    div_id=f'{kind}-{section.database}',
                    config=config,
                )
                + '</div>'
            )
    parts.append('<h2 id="influxql">The InfluxQL it ran</h2>')
    parts.append(f'<pre>{html.escape(format_queries(report))}</pre>')
    parts.append('</body></html>')
    return '\n'.join(parts)


def write_html(report: Report, path: str, source: str) -> None:
    """Write the report to *path* (see :func:`render_html`)."""
    page = render_html(report, source)
    with open(path, 'w', encoding='utf-8') as file:
        file.write(page)


def http_query(
    url: str, username: str | None = None, password: str | None = None
) -> Query:
    """A :data:`Query` sending GET ``/query`` to the server at *url*."""
    import httpx

    client = httpx.Client(timeout=30.0)
    auth = (username, password or '') if username else None

    def query(statement: str, database: str) -> dict[str, Any]:
        response = client.get(
            f'{url.rstrip("/")}/query',
            params={'q': statement, 'db': database, 'epoch': 'ms'},
            auth=auth,
        )
        if response.status_code >= 300:
            raise ReportError(
                f'HTTP {response.status_code}: {response.text.strip()}'
            )
        answer: dict[str, Any] = response.json()
        return answer

    return query


def main(argv: Sequence[str] | None = None) -> int:
    """Write the report of the databases given on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--url',
        default=os.environ.get('INFLUXDB_URL', 'http://localhost:8086'),
        help='the InfluxDB server (default: INFLUXDB_URL, else %(default)s)',
    )
    parser.add_argument(
        '--database',
        action='append',
        required=True,
        help='a database holding request metrics (repeat for several)',
    )
    parser.add_argument('--measurement', default='request')
    parser.add_argument(
        '--interval',
        help='the width of a time bucket (250ms, 1s, 5m; default: the '
        'narrowest giving at most 30 buckets)',
    )
    parser.add_argument(
        '--last',
        help='only the requests of the last while (30m, 6h, 7d; default: '
        'all of them)',
    )
    parser.add_argument('--output', default='report.html')
    arguments = parser.parse_args(argv)
    start_ms = None
    if arguments.last is not None:
        try:
            start_ms = (
                int(time.time() * 1000) - parse_interval(arguments.last)[0]
            )
        except ValueError as error:
            parser.error(str(error).replace('interval', '--last', 1))
    query = http_query(
        arguments.url,
        os.environ.get('INFLUXDB_USER'),
        os.environ.get('INFLUXDB_PASSWORD'),
    )
    try:
        report = collect(
            query,
            arguments.database,
            arguments.measurement,
            arguments.interval,
            start_ms,
        )
    except (ReportError, ValueError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    for section in report.sections:
        print(f'{section.database} ({section.measurement}):')
        print(format_table(section))
        print()
    print('The InfluxQL it ran:')
    print(format_queries(report))
    print()
    try:
        write_html(report, arguments.output, f'InfluxDB at {arguments.url}')
    except PlotlyMissingError as error:
        print(error, file=sys.stderr)
        return 2
    print(f'The report: {os.path.abspath(arguments.output)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
