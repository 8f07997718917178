"""Request-path cost of ``add_measurement``: ours against 2.2.1's.

What is timed is the call an application makes on its request path once a
measurement is built: ``add_measurement(measurement)``, in nanoseconds per
call.  The measurements (3 tags from small sets, 3 varying fields, as in
``encode.py``) are built before timing, and each contender adds its own
1000 measurements over and over.

* ours: ``Client.add_measurement`` of a
  ``sprockets_influxdb.Client(url=<unreachable local URL>, ...)`` with a huge
  submission interval, trigger size and buffer size, so that nothing is
  written while it is timed.  It copies the measurement into the bounded
  buffer; encoding happens later in the writer thread, as SPEC section 2
  allows.  A fresh client is made for each round and shut down after it
  (outside the timing), so that the buffer starts empty.
* historical: sprockets-influxdb 2.2.1's module-level ``add_measurement``,
  installed with a huge trigger size and interval.  It encodes the
  measurement on the calling thread and schedules a timer on the current
  Tornado IOLoop, so it is timed inside a running asyncio loop.  Its
  module-level buffer is reset between rounds and each round adds fewer
  measurements than its buffer limit (25000).

The contenders alternate round by round (the order rotates) and the median
of each is compared.  Target (SPEC section 9): ours at least 5x cheaper.
"""

from __future__ import annotations

import asyncio
import logging
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

TARGET = 5.0
POOL = 1000
HUGE = 10**9
UNREACHABLE = 'http://127.0.0.1:9/write'  # discard port: nothing listens


def build(measurement_class: Any, requests: Sequence[Request]) -> list[Any]:
    """Build one measurement per request with *measurement_class*."""
    measurements = []
    for request in requests:
        measurement = measurement_class(DATABASE, MEASUREMENT)
        measurement.set_tag('method', request.method)
        measurement.set_tag('endpoint', request.endpoint)
        measurement.set_tag('status_code', request.status_code)
        measurement.set_field('duration', request.duration)
        measurement.set_field('content_length', request.content_length)
        measurement.set_field('request_id', request.request_id)
        measurements.append(measurement)
    return measurements


def add_all(
    add: Callable[[Any], None], measurements: Sequence[Any], number: int
) -> float:
    """Call *add* *number* times, cycling through *measurements*.

    :returns: seconds per call
    """
    repeats, rest = divmod(number, len(measurements))
    work = [*measurements] * repeats + [*measurements[:rest]]
    start = time.perf_counter()
    for measurement in work:
        add(measurement)
    return (time.perf_counter() - start) / len(work)


def ours_round(
    requests: Sequence[Request], number: int
) -> Callable[[], float]:
    """Return a round of ours: a fresh client, timed adds, shutdown."""
    measurements = build(sprockets_influxdb.Measurement, requests)

    def run() -> float:
        client = sprockets_influxdb.Client(
            url=UNREACHABLE,
            submission_interval=HUGE,
            trigger_size=HUGE,
            max_buffer_size=HUGE,
            tag_hostname=False,
            shutdown_timeout=0,
        )
        try:
            return add_all(client.add_measurement, measurements, number)
        finally:
            # Drops what was buffered (nothing listens there), stops the
            # writer thread: the next round starts from an empty buffer.
            client.shutdown().result(timeout=30)

    return run


def historical_round(
    module: Any, requests: Sequence[Request], number: int
) -> Callable[[], float]:
    """Return a round of 2.2.1: timed adds, then its buffer is reset."""
    measurements = build(module.Measurement, requests)
    limit = module._max_buffer_size
    if number >= limit:
        raise SystemExit(
            f'--number must stay under the historical buffer limit {limit}'
        )

    def run() -> float:
        try:
            return add_all(module.add_measurement, measurements, number)
        finally:
            assert module._buffer_size == number, module._buffer_size
            module._measurements.clear()
            module._buffer_size = 0

    return run


async def measure(rounds: int, number: int) -> dict[str, list[float]]:
    """Time both contenders inside a running asyncio (Tornado) loop."""
    historical = load_historical()
    historical.install(
        url=UNREACHABLE,
        submission_interval=HUGE,
        trigger_size=HUGE,
    )
    requests = make_requests(POOL)
    contenders = {
        'ours': ours_round(requests, number),
        'historical': historical_round(historical, requests, number),
    }
    for run in contenders.values():  # warm up
        run()
    try:
        return alternate(contenders, rounds)
    finally:
        historical._maybe_stop_timeout()


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], rounds=15, number=20_000)
    # Each round's client is shut down with its measurements undelivered,
    # on purpose: do not warn about it.
    logging.getLogger('sprockets_influxdb').setLevel(logging.ERROR)
    print(f'add_measurement: {describe_machine()}')
    print(f'  {args.rounds} rounds of {args.number} calls per contender')
    results = asyncio.run(measure(args.rounds, args.number))
    for name, values in results.items():
        print(
            f'  {name:16} median {median(values) * 1e9:.0f} ns per call '
            f'(min/max {spread(values)})'
        )
    ours = median(results['ours'])
    historical = median(results['historical'])
    ratio = historical / ours
    print(
        f'add_measurement: ours {ours * 1e9:.0f} ns, historical '
        f'{historical * 1e9:.0f} ns ({duration(historical)}) -> '
        f'{ratio:.1f}x cheaper (target >= {TARGET:g}x): '
        f'{verdict(ratio >= TARGET)}'
    )


if __name__ == '__main__':
    main()
