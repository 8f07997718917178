"""Delivery benchmark: measurements per second into a real InfluxDB.

The script starts its own throwaway ``influxd`` (1.6.7; the ``InfluxServer``
of ``tests/servers.py``: a temporary directory, free loopback ports,
reporting, the monitor store and HTTP logging disabled) and stops it at the
end.  The workload is N measurements of HTTP request metrics (3 tags from
small sets, 3 varying fields, as in ``encode.py``), each at a time of its
own, so that the server stores every one of them.  It is delivered twice
in every round, at each precision:

* at ``ns``, the library's default: the measurements keep the times the
  library's clock gave them when they were built (nanoseconds, distinct);
* at ``ms``, the precision 2.x wrote and the library's default before
  nanoseconds: the measurements are given distinct millisecond times with
  ``set_timestamp`` and the client is made with ``precision='ms'``.

For each precision, two contenders:

* ours: the measurements are built beforehand; what is timed runs from the
  first ``add_measurement`` to the end of ``client.flush(timeout=120)``, on
  a ``sprockets_influxdb.Client`` with ``trigger_size=5000`` and
  ``max_batch_size=5000`` (other settings at their defaults, except a
  buffer big enough for N so that nothing is dropped).  The client is
  running, as in an application that has been up for a while: one
  measurement was written and flushed before timing, so that its writer
  thread and a connection exist.  The library encodes the lines in its
  writer thread (with the compiled encoder when it is built: the first
  line printed says whether it is), batches them and posts them while the
  application thread is still adding.
* bare loop: the same lines, encoded and joined into batches of 5000 before
  timing, posted one batch after the other on one ``http.client``
  connection, connected before timing (``POST /write?db=...&precision=n``,
  or ``ms``, each response read before the next request): the fastest a
  client can possibly go without encoding anything.

Each round, each contender writes to a fresh database, the number of points
stored is checked with a ``COUNT`` query, and the database is dropped.  The
four contenders alternate round by round (the order rotates) and the median
throughput of each is compared.  Target (SPEC section 9): ours at least 80%
of the bare loop's measurements per second, at ``ns`` (the default); the
same ratio at ``ms`` is printed beside it.
"""

from __future__ import annotations

import http.client
import logging
import time
import urllib.parse
from collections.abc import Callable, Sequence

from _common import (
    MEASUREMENT,
    ROOT,
    Request,
    alternate,
    describe_machine,
    duration,
    make_requests,
    median,
    parse_args,
    spread,
    verdict,
)

import sprockets_influxdb

try:
    from tests.servers import InfluxServer
except ImportError as error:  # pragma: no cover - a broken checkout
    raise SystemExit(
        f'delivery: cannot import InfluxServer from {ROOT}/tests/servers.py '
        f'({error})'
    ) from None

TARGET = 0.8
BATCH = 5000


def build(
    requests: Sequence[Request], start_ms: int | None
) -> list[sprockets_influxdb.Measurement]:
    """One measurement per request: timed by the library's clock, or one
    millisecond apart from *start_ms*."""
    measurements = []
    for index, request in enumerate(requests):
        measurement = sprockets_influxdb.Measurement('unset', MEASUREMENT)
        measurement.set_tag('method', request.method)
        measurement.set_tag('endpoint', request.endpoint)
        measurement.set_tag('status_code', request.status_code)
        measurement.set_field('duration', request.duration)
        measurement.set_field('content_length', request.content_length)
        measurement.set_field('request_id', request.request_id)
        if start_ms is not None:
            # An exact decimal number of milliseconds: none shares one.
            measurement.set_timestamp((start_ms + index) / 1000)
        measurements.append(measurement)
    return measurements


def batches(
    measurements: Sequence[sprockets_influxdb.Measurement], precision: str
) -> list[bytes]:
    """The lines of *measurements*, joined into request bodies of BATCH."""
    lines = [measurement.marshall(precision) for measurement in measurements]
    return [
        '\n'.join(lines[start : start + BATCH]).encode('utf-8')
        for start in range(0, len(lines), BATCH)
    ]


def count(server: InfluxServer, database: str) -> int:
    """The number of points stored in *database*."""
    payload = server.query(
        f'SELECT COUNT("duration") FROM "{MEASUREMENT}"', db=database
    )
    series = payload['results'][0].get('series')
    return int(series[0]['values'][0][1]) if series else 0


class Contest:
    """Both contenders at one precision, writing to one server, a fresh
    database a round."""

    def __init__(
        self,
        server: InfluxServer,
        measurements: Sequence[sprockets_influxdb.Measurement],
        precision: str,
    ) -> None:
        self.server = server
        self.measurements = measurements
        self.precision = precision
        self.bodies = batches(measurements, precision)
        self.rounds = 0
        self.counts: dict[str, list[int]] = {'ours': [], 'bare loop': []}

    def _database(self, contender: str) -> str:
        self.rounds += 1
        name = (
            f'bench_{contender.replace(" ", "_")}_{self.precision}_'
            f'{self.rounds}'
        )
        self.server.create_database(name)
        return name

    def _check(self, contender: str, database: str) -> None:
        stored = count(self.server, database)
        self.counts[contender].append(stored)
        self.server.drop_database(database)
        if stored != len(self.measurements):
            print(
                f'  WARNING: {contender} stored {stored} of '
                f'{len(self.measurements)} points'
            )

    def ours(self) -> float:
        """One round of ours; returns measurements per second."""
        database = self._database('ours')
        for measurement in self.measurements:
            measurement.database = database
        client = sprockets_influxdb.Client(
            url=self.server.url,
            trigger_size=BATCH,
            max_batch_size=BATCH,
            max_buffer_size=len(self.measurements),
            tag_hostname=False,
            precision=self.precision,
        )
        # A running application: the writer thread and a connection are up.
        warm = sprockets_influxdb.Measurement(database, 'warm_up')
        warm.set_field('value', 1)
        client.add_measurement(warm)
        client.flush(timeout=120).result()
        add = client.add_measurement
        start = time.perf_counter()
        for measurement in self.measurements:
            add(measurement)
        delivered = client.flush(timeout=120).result()
        elapsed = time.perf_counter() - start
        client.shutdown().result()
        stats = client.stats()
        if not delivered or stats.dropped_total:
            print(f'  WARNING: flush returned {delivered}, {stats}')
        self._check('ours', database)
        return len(self.measurements) / elapsed

    def bare(self) -> float:
        """One round of the bare loop; returns measurements per second."""
        database = self._database('bare loop')
        url = urllib.parse.urlsplit(self.server.url)
        wire = sprockets_influxdb.line_protocol.normalize_precision(
            self.precision
        )
        path = f'/write?db={database}&precision={wire}'
        headers = {'Content-Type': 'text/plain; charset=utf-8'}
        connection = http.client.HTTPConnection(
            url.hostname or '127.0.0.1', url.port, timeout=120
        )
        connection.connect()
        start = time.perf_counter()
        for body in self.bodies:
            connection.request('POST', path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 204:
                raise RuntimeError(f'bare loop: HTTP {response.status}')
        elapsed = time.perf_counter() - start
        connection.close()
        self._check('bare loop', database)
        return len(self.measurements) / elapsed


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], rounds=9, number=200_000)
    logging.basicConfig(level=logging.ERROR)
    print(f'delivery: {describe_machine()}')
    print(
        f'  {args.rounds} rounds of {args.number} measurements per '
        f'contender, batches of {BATCH}'
    )
    requests = make_requests(args.number)
    start_ms = int(time.time() * 1000) - args.number - 60_000
    with InfluxServer() as server:
        contests = {
            'ns': Contest(server, build(requests, None), 'ns'),
            'ms': Contest(server, build(requests, start_ms), 'ms'),
        }
        contenders: dict[str, Callable[[], float]] = {}
        for precision, contest in contests.items():
            suffix = '' if precision == 'ns' else f' at {precision}'
            contenders[f'ours{suffix}'] = contest.ours
            contenders[f'bare loop{suffix}'] = contest.bare
            warm_up = Contest(
                server, contest.measurements[: BATCH * 4], precision
            )
            warm_up.ours()
            warm_up.bare()
        results = alternate(contenders, args.rounds)
    ratios = {}
    complete = True
    for precision, contest in contests.items():
        suffix = '' if precision == 'ns' else f' at {precision}'
        for contender in ('ours', 'bare loop'):
            values = results[contender + suffix]
            print(
                f'  {contender + suffix:16} median {median(values):,.0f} '
                f'measurements/s = {duration(args.number / median(values))} '
                f'for {args.number} (min/max {spread(values)}); stored '
                f'{sorted(set(contest.counts[contender]))}'
            )
        ratios[precision] = median(results[f'ours{suffix}']) / median(
            results[f'bare loop{suffix}']
        )
        complete = complete and all(
            stored == args.number
            for counts in contest.counts.values()
            for stored in counts
        )
    print(
        f'  ns against ms: {ratios["ns"]:.0%} of the bare loop at ns, '
        f'{ratios["ms"]:.0%} at ms; ours at ns '
        f'{median(results["ours"]) / median(results["ours at ms"]) - 1:+.1%}'
        ' measurements/s against ours at ms'
    )
    ours = median(results['ours'])
    bare = median(results['bare loop'])
    ratio = ratios['ns']
    print(
        f'delivery: ours {ours:,.0f}/s, bare loop {bare:,.0f}/s -> '
        f'{ratio:.0%} of the bare loop (target >= {TARGET:.0%}'
        f'{"" if complete else ", and every point stored"}): '
        f'{verdict(ratio >= TARGET and complete)}'
    )


if __name__ == '__main__':
    main()
