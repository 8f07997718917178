"""Helpers shared by the benchmarks in this directory.

Not a benchmark itself.  It holds the workload (HTTP request metrics: tag
values drawn from small sets, field values that vary), the loader of the
historical sprockets-influxdb 2.2.1 module, and the round-robin timing and
reporting code every benchmark uses.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import math
import os
import platform
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
HISTORICAL_PATH = (
    BENCH_DIR / '.vendor' / 'sprockets221' / 'sprockets_influxdb.py'
)
HISTORICAL_INSTALL = (
    'pip install --no-deps --target bench/.vendor/sprockets221 '
    'sprockets-influxdb==2.2.1'
)

# The measurements of every contender carry exactly the tags the workload
# sets: no ``hostname`` or ``environment`` base tag.  Set before
# sprockets_influxdb is imported (its defaults are read from here).
os.environ['INFLUXDB_TAG_HOSTNAME'] = 'false'
os.environ.pop('ENVIRONMENT', None)

if str(ROOT) not in sys.path:  # run from anywhere: use this checkout
    sys.path.insert(0, str(ROOT))

DATABASE = 'bench'
MEASUREMENT = 'request'
METHODS = ('GET', 'GET', 'GET', 'POST', 'PUT', 'DELETE')
ENDPOINTS = (
    '/',
    '/health',
    '/api/items',
    '/api/items/{item_id}',
    '/api/users/{user_id}',
    '/api/orders',
    '/api/orders/{order_id}/lines',
    '/login',
)
STATUSES = (200, 200, 200, 200, 201, 204, 304, 400, 404, 500)


class Request(NamedTuple):
    """The values of one recorded HTTP request."""

    method: str
    endpoint: str
    status_code: int
    duration: float
    content_length: int
    request_id: str


def make_requests(count: int, seed: int = 2024) -> list[Request]:
    """Return *count* requests: 3 tags from small sets, 3 varying fields.

    :param count: how many
    :param seed: the random seed, so that every run measures the same data
    """
    rng = random.Random(seed)
    return [
        Request(
            method=rng.choice(METHODS),
            endpoint=rng.choice(ENDPOINTS),
            status_code=rng.choice(STATUSES),
            duration=rng.lognormvariate(-4.5, 1.0),
            content_length=rng.randrange(0, 65536),
            request_id=f'{rng.getrandbits(32):08x}',
        )
        for _ in range(count)
    ]


def load_historical() -> ModuleType:
    """Import sprockets-influxdb 2.2.1 as ``sprockets_influxdb_221``.

    The historical package is the single module ``sprockets_influxdb.py``,
    whose name clashes with this package: it is loaded from
    ``bench/.vendor`` (where ``bench/run`` installs it) under another name.
    Exits with status 2 and the command to run when it is not there.
    """
    if not HISTORICAL_PATH.is_file():
        print(
            f'{HISTORICAL_PATH} is missing: run `bash bench/run`, or '
            f'`{HISTORICAL_INSTALL}` from the repository root',
            file=sys.stderr,
        )
        raise SystemExit(2)
    name = 'sprockets_influxdb_221'
    spec = importlib.util.spec_from_file_location(name, HISTORICAL_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with warnings.catch_warnings():
        # Its source has invalid escape sequences ('\ ') and Python 3.12+
        # warns about them when compiling it.
        warnings.simplefilter('ignore')
        spec.loader.exec_module(module)
    return module


def parse_args(
    description: str, rounds: int, number: int
) -> argparse.Namespace:
    """Parse the ``--rounds`` and ``--number`` options of a benchmark.

    :param description: the help text
    :param rounds: the default number of timed rounds
    :param number: the default number of operations per contender per round
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        '--rounds',
        type=int,
        default=rounds,
        help=f'timed rounds, contenders alternating (default {rounds})',
    )
    parser.add_argument(
        '--number',
        type=int,
        default=number,
        help=f'operations per contender per round (default {number})',
    )
    return parser.parse_args()


def rotated(items: Sequence[str], index: int) -> list[str]:
    """Return *items* rotated by *index*: who goes first changes each round.

    :param items: the contenders
    :param index: the round number
    """
    shift = index % len(items)
    return [*items[shift:], *items[:shift]]


def alternate(
    contenders: dict[str, Callable[[], float]], rounds: int
) -> dict[str, list[float]]:
    """Run each contender once per round, in a rotating order.

    Each callable runs one round and returns the figure of that round (for
    example seconds per operation).  A full garbage collection runs before
    each timed call so that no contender pays for another's garbage.

    :param contenders: a callable per contender name
    :param rounds: how many rounds
    :returns: the figures of each contender, one per round
    """
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for index in range(rounds):
        for name in rotated(list(contenders), index):
            gc.collect()
            results[name].append(contenders[name]())
    return results


def median(values: Sequence[float]) -> float:
    """The median of *values*."""
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """Describe the spread of *values* (min to max) relative to the median."""
    middle = statistics.median(values)
    low = (min(values) / middle - 1) * 100
    high = (max(values) / middle - 1) * 100
    return f'{low:+.0f}%/{high:+.0f}%'


def median_interval(
    values: Sequence[float], coverage: float = 0.9
) -> tuple[float, float]:
    """A distribution-free interval holding the median of what *values*
    sample with at least *coverage* probability: the *k*-th smallest and
    largest values, *k* as large as the binomial distribution allows (with
    7 values or fewer, the smallest and the largest)."""
    ordered = sorted(values)
    n = len(ordered)
    k = 1
    while k < n // 2:
        # P(the median lies outside the (k+1)-th smallest and largest)
        outside = 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n
        if 1 - outside < coverage:
            break
        k += 1
    return ordered[k - 1], ordered[n - k]


def duration(seconds: float) -> str:
    """Format a duration with a suitable unit."""
    if seconds < 1e-6:
        return f'{seconds * 1e9:.0f} ns'
    if seconds < 1e-3:
        return f'{seconds * 1e6:.2f} us'
    if seconds < 1:
        return f'{seconds * 1e3:.1f} ms'
    return f'{seconds:.2f} s'


def counted_by(
    registry: Any, metric: str, labels: dict[str, str]
) -> Callable[[int], None]:
    """A check that a Prometheus counter grew by the requests of a round.

    :param registry: the ``prometheus_client`` registry holding it
    :param metric: the sample's name
    :param labels: the labels of the one sample the requests count in
    :returns: a function taking the number of requests just made, which
        raises :class:`AssertionError` when the counter did not grow by it
    """

    def count() -> float:
        value = registry.get_sample_value(metric, labels)
        return float(value or 0.0)

    previous = count()

    def after(number: int) -> None:
        nonlocal previous
        counted = count()
        assert counted - previous == number, (counted, previous, number)
        previous = counted

    return after


def verdict(met: bool) -> str:
    """``MET`` or ``MISSED``."""
    return 'MET' if met else 'MISSED'


def describe_machine() -> str:
    """One line naming the interpreter, the machine and our encoder."""
    from sprockets_influxdb.line_protocol import COMPILED

    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as cpuinfo:
            for line in cpuinfo:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f'Python {platform.python_version()} on {cpu}, '
        f'{os.cpu_count()} cores, {time.strftime("%Y-%m-%d")}; our '
        f'encoder {"compiled" if COMPILED else "in pure Python"}'
    )
