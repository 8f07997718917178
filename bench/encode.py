"""Encoding benchmark: build one point and turn it into a line.

What is timed, per operation and for each contender: create a measurement,
set 3 tags and 3 fields, and marshall it to one line of line protocol with
a millisecond timestamp (and, for ours, also with a nanosecond one).

* ours: ``sprockets_influxdb.Measurement(...)``, ``set_tag`` x3,
  ``set_field`` x3, ``marshall('ns')`` (validation and escaping included):
  the nanoseconds the library writes by default;
* ours at ms: the same with ``marshall('ms')``, the precision 2.x wrote
  and the library's default until nanoseconds replaced it: the two are
  compared in the same run;
* historical: the same calls on sprockets-influxdb 2.2.1's ``Measurement``;
* influxdb-client: ``Point(...).tag(...)`` x3 ``.field(...)`` x3
  ``.time(<ms>, WritePrecision.MS).to_line_protocol()``.

The workload is that of HTTP request metrics: the tags ``method``,
``endpoint`` and ``status_code`` take their values from small sets, the
fields ``duration`` (float), ``content_length`` (int) and ``request_id``
(an 8-character string) vary from point to point.  The inputs are generated
before timing, and the same inputs are given to every contender.

The contenders alternate round by round (the order rotates) and the median
time per operation of each is compared.  Targets (SPEC section 9): ours at
least 3x faster than the historical package, and faster than
influxdb-client.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from _common import (
    DATABASE,
    MEASUREMENT,
    Request,
    alternate,
    describe_machine,
    duration,
    load_historical,
    make_requests,
    median,
    parse_args,
    spread,
    verdict,
)

import sprockets_influxdb

TARGET_HISTORICAL = 3.0
TARGET_CLIENT = 1.0

Encoder = Callable[[Sequence[Request]], list[str]]


def ours_encoder(precision: str) -> Encoder:
    """Encode with this library, at *precision*."""
    measurement_class = sprockets_influxdb.Measurement

    def encode(requests: Sequence[Request]) -> list[str]:
        lines = []
        for request in requests:
            measurement = measurement_class(DATABASE, MEASUREMENT)
            measurement.set_tag('method', request.method)
            measurement.set_tag('endpoint', request.endpoint)
            measurement.set_tag('status_code', request.status_code)
            measurement.set_field('duration', request.duration)
            measurement.set_field('content_length', request.content_length)
            measurement.set_field('request_id', request.request_id)
            lines.append(measurement.marshall(precision))
        return lines

    return encode


def historical_encoder() -> Encoder:
    """Encode with sprockets-influxdb 2.2.1."""
    measurement_class = load_historical().Measurement

    def encode(requests: Sequence[Request]) -> list[str]:
        lines = []
        for request in requests:
            measurement = measurement_class(DATABASE, MEASUREMENT)
            measurement.set_tag('method', request.method)
            measurement.set_tag('endpoint', request.endpoint)
            measurement.set_tag('status_code', request.status_code)
            measurement.set_field('duration', request.duration)
            measurement.set_field('content_length', request.content_length)
            measurement.set_field('request_id', request.request_id)
            lines.append(measurement.marshall())
        return lines

    return encode


def client_encoder() -> Encoder:
    """Encode with influxdb-client's ``Point``."""
    from influxdb_client.client.write.point import Point
    from influxdb_client.domain.write_precision import WritePrecision

    point_class: Any = Point  # untyped
    milliseconds = WritePrecision.MS
    clock = time.time_ns

    def encode(requests: Sequence[Request]) -> list[str]:
        lines = []
        for request in requests:
            lines.append(
                point_class(MEASUREMENT)
                .tag('method', request.method)
                .tag('endpoint', request.endpoint)
                .tag('status_code', request.status_code)
                .field('duration', request.duration)
                .field('content_length', request.content_length)
                .field('request_id', request.request_id)
                .time(clock() // 1_000_000, milliseconds)
                .to_line_protocol()
            )
        return lines

    return encode


def timed(encode: Encoder, requests: Sequence[Request]) -> Callable[[], float]:
    """Return a round of *encode*: seconds per operation."""

    def run() -> float:
        start = time.perf_counter()
        encode(requests)
        return (time.perf_counter() - start) / len(requests)

    return run


def check(encoders: dict[str, Encoder], requests: Sequence[Request]) -> None:
    """Show one line per contender and make sure they carry the same data."""
    sample = requests[:1]
    for name, encode in encoders.items():
        line = encode(sample)[0]
        print(f'  {name:16} {line}')
        head, fields, _ = line.split(' ')
        assert sorted(head.split(',')[1:]) == sorted(
            [
                f'endpoint={sample[0].endpoint}',
                f'method={sample[0].method}',
                f'status_code={sample[0].status_code}',
            ]
        ), line
        assert len(fields.split(',')) == 3, line


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], rounds=15, number=20_000)
    requests = make_requests(args.number)
    encoders = {
        'ours': ours_encoder('ns'),
        'ours at ms': ours_encoder('ms'),
        'historical': historical_encoder(),
        'influxdb-client': client_encoder(),
    }
    print(f'encode: {describe_machine()}')
    print(f'  {args.rounds} rounds of {args.number} points per contender')
    check(encoders, requests)
    for encode in encoders.values():  # warm up
        encode(requests[:2000])
    results = alternate(
        {name: timed(encode, requests) for name, encode in encoders.items()},
        args.rounds,
    )
    for name, values in results.items():
        print(
            f'  {name:16} median {duration(median(values))} per point '
            f'(min/max {spread(values)})'
        )
    ours = median(results['ours'])
    ours_ms = median(results['ours at ms'])
    print(
        f'  ns against ms: ours {duration(ours)} at ns, '
        f'{duration(ours_ms)} at ms ({ours / ours_ms - 1:+.1%}); '
        f'at ms: {median(results["historical"]) / ours_ms:.1f}x historical, '
        f'{median(results["influxdb-client"]) / ours_ms:.1f}x influxdb-client'
    )
    historical = median(results['historical'])
    client = median(results['influxdb-client'])
    versus_historical = historical / ours
    versus_client = client / ours
    met = (
        versus_historical >= TARGET_HISTORICAL
        and versus_client > TARGET_CLIENT
    )
    print(
        f'encode: ours {duration(ours)}, historical {duration(historical)}, '
        f'influxdb-client {duration(client)} -> '
        f'{versus_historical:.1f}x historical, '
        f'{versus_client:.1f}x influxdb-client '
        f'(target >= {TARGET_HISTORICAL:g}x, > {TARGET_CLIENT:g}x): '
        f'{verdict(met)}'
    )


if __name__ == '__main__':
    main()
