"""The compiled fast path against the Python encoder it stands in for.

``line_protocol.fast_encode`` (the C extension ``_speedups``) must return
exactly the line :func:`line_protocol.encode_python` gives and leave the
same ``last`` state, or return ``None`` and change nothing, so that
:func:`line_protocol.encode` is the same with or without it.  The fast path
only reads the caches the Python encoder fills, so each point is given to
the Python encoder first, then to the fast path.
"""

from __future__ import annotations

import collections
import copy
import enum
import math
import os
import pathlib
import random
import re
import struct
import subprocess
import sys
import textwrap
import types
import typing

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from sprockets_influxdb import line_protocol

PURE_PYTHON = os.environ.get('SPROCKETS_INFLUXDB_PURE_PYTHON', '') not in (
    '',
    '0',
)

NOT_BUILT = (
    'the C extension sprockets_influxdb._speedups was not built: install '
    'the package with `pip install -e .` where a C compiler is available '
    '(or set SPROCKETS_INFLUXDB_PURE_PYTHON=1 to test the pure Python mode)'
)


def speedups() -> types.ModuleType:
    """The compiled module, set up with the encoder's caches.

    Imported directly, so that it is compared with the Python encoder even
    when ``SPROCKETS_INFLUXDB_PURE_PYTHON`` keeps ``line_protocol`` from
    using it; fails (never skips) when it was not built.
    """
    try:
        from sprockets_influxdb import _speedups
    except ImportError:
        pytest.fail(NOT_BUILT, pytrace=False)
    _speedups.configure(
        line_protocol._prefix_cache,
        line_protocol._measurement_cache,
        line_protocol._field_key_cache,
        line_protocol._SERIES_LIMIT,
    )
    return _speedups


Last = typing.Optional[dict[str, list[int]]]


class Colour(enum.IntEnum):
    RED = 1


class Flag(enum.IntFlag):
    A = 1


class Mode(str, enum.Enum):
    FAST = 'fast'


class Label(str):
    pass


class Real(float):
    pass


def fast(
    name: object,
    tags: object,
    fields: object,
    timestamp: object,
    precision: str = 'ms',
    last: object = None,
) -> str | None:
    """Call the fast path; fail (never skip) when it was not built."""
    return speedups().encode(name, tags, fields, timestamp, precision, last)


def python(
    name: object,
    tags: object,
    fields: object,
    timestamp: object,
    precision: str = 'ms',
    last: Last = None,
) -> str:
    return line_protocol.encode_python(
        name,  # type: ignore[arg-type]
        tags,  # type: ignore[arg-type]
        fields,  # type: ignore[arg-type]
        timestamp,  # type: ignore[arg-type]
        precision,
        last,
    )


def clear_caches() -> None:
    """Empty the encoder's caches in place, as it does itself when full."""
    for cache in (
        line_protocol._measurement_cache,
        line_protocol._tag_key_cache,
        line_protocol._tag_value_cache,
        line_protocol._field_key_cache,
        line_protocol._tag_pair_cache,
        line_protocol._prefix_cache,
    ):
        cache.clear()


def compare(
    name: object,
    tags: object,
    fields: object,
    timestamp: object,
    precision: str,
    last: Last,
) -> tuple[str | None, str | None]:
    """Encode one point with both encoders from the same ``last`` state.

    Checks that the fast path returns the Python encoder's line and leaves
    the same ``last``, or returns ``None`` (always when the Python encoder
    raises) and leaves ``last`` untouched; and that
    :func:`line_protocol.encode` as a whole does what the Python encoder
    does.  *last* is then updated as the Python encoder left it.

    :returns: the Python encoder's line (``None`` when it raised) and
        what the fast path returned
    """
    start = copy.deepcopy(last)
    python_last = copy.deepcopy(start)
    refusal: Exception | None = None
    try:
        expected: str | None = python(
            name, tags, fields, timestamp, precision, python_last
        )
    except Exception as error:  # ValueError, or what else Python raises
        expected = None
        refusal = error
        assert python_last == start
    fast_last = copy.deepcopy(start)
    line = fast(name, tags, fields, timestamp, precision, fast_last)
    if expected is None:
        assert line is None, 'the fast path wrote a point Python refuses'
    if line is None:
        assert fast_last == start, (
            'the fast path left the point to Python but changed last'
        )
    else:
        assert line == expected
        assert fast_last == python_last
    encode_last = copy.deepcopy(start)
    if refusal is not None:
        with pytest.raises(type(refusal), match=re.escape(str(refusal))):
            line_protocol.encode(
                name,  # type: ignore[arg-type]
                tags,  # type: ignore[arg-type]
                fields,  # type: ignore[arg-type]
                timestamp,  # type: ignore[arg-type]
                precision,
                encode_last,
            )
    else:
        assert (
            line_protocol.encode(
                name,  # type: ignore[arg-type]
                tags,  # type: ignore[arg-type]
                fields,  # type: ignore[arg-type]
                timestamp,  # type: ignore[arg-type]
                precision,
                encode_last,
            )
            == expected
        )
    assert encode_last == python_last
    if last is not None:
        assert python_last is not None
        last.clear()
        last.update(python_last)
    return expected, line


def time_of(line: str | None) -> int:
    assert line is not None
    return int(line.rsplit(' ', 1)[1])


# Strategies -----------------------------------------------------------------
# Mostly points the Python encoder accepts, so that the fast path has lines
# to write, mixed with everything it must leave to Python.

INT64 = 2**63
plain_chars = st.sampled_from('abm_.0')
odd_chars = st.sampled_from(',= "\'#\\')  # escaped, quoted or refused
control_chars = st.sampled_from('\n\r\t\x00\x1b\x7f')
unicode_chars = st.sampled_from('éß☃日😀\u200b')
surrogates = st.sampled_from('\ud800\udcff')
good_texts = st.text(
    alphabet=st.one_of(plain_chars, plain_chars, odd_chars, unicode_chars),
    min_size=1,
    max_size=6,
)
wild_texts = st.text(
    alphabet=st.one_of(
        plain_chars,
        odd_chars,
        control_chars,
        unicode_chars,
        surrogates,
        st.characters(codec='utf-8'),
    ),
    max_size=6,
)
texts = st.one_of(good_texts, good_texts, good_texts, wild_texts)
names = st.one_of(
    st.sampled_from(['m', 'cpu', 'disk io', 'a,b', 'a=b', 'héllo', '#x']),
    texts,
    texts,
    st.one_of(st.sampled_from(['', 'time']), texts.map(Label)),
)
keys = st.one_of(
    st.sampled_from(['host', 'k', 'f', 'a b', 'x=y', 'c,d', 'é', 'time']),
    texts,
    texts,
    st.just(''),
)
tag_values = st.one_of(
    st.sampled_from(['', 'a', 'fast', 'x y', 'p=q', 'r,s', '日']),
    texts,
    texts,
    st.one_of(
        texts.map(Label),
        st.none(),
        st.booleans(),
        st.integers(min_value=-3, max_value=3),
        st.floats(),
        st.sampled_from([Colour.RED, Flag.A, Mode.FAST]),
        st.lists(st.integers(), max_size=1),  # unhashable
    ),
)
tag_sets = st.dictionaries(keys, tag_values, max_size=3)
odd_field_values = st.one_of(
    st.integers(),
    st.integers(min_value=-INT64 - 2, max_value=-INT64 + 2),
    st.integers(min_value=INT64 - 3, max_value=INT64 + 2),
    st.floats(),
    st.floats(allow_subnormal=True, min_value=-1e-300, max_value=1e-300),
    st.sampled_from(
        [
            -0.0,
            0.0,
            5e-324,
            -5e-324,
            2.2250738585072014e-308,
            1e-310,
            1.7976931348623157e308,
            1e16,
            1e22,
            0.1 + 0.2,
            float('nan'),
            float('inf'),
            float('-inf'),
        ]
    ),
    wild_texts,
    st.text(max_size=30),
    st.sampled_from([Colour.RED, Flag.A, Mode.FAST, Label('x'), Real(1.5)]),
    st.sampled_from([None, b'bytes', 1j]),
)
field_values = st.one_of(
    st.booleans(),
    st.integers(min_value=-INT64, max_value=INT64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
    st.text(alphabet=plain_chars, max_size=8),
    odd_field_values,
)
field_sets = st.one_of(
    st.dictionaries(keys, field_values, min_size=1, max_size=3),
    st.dictionaries(keys, field_values, min_size=1, max_size=3),
    st.dictionaries(keys, field_values, max_size=3),
)
# Ints are nanoseconds the library chose, floats seconds the user gave.
nanoseconds = st.one_of(
    st.integers(min_value=0, max_value=2**63 - 1),
    st.integers(
        min_value=1_600_000_000 * 10**9, max_value=1_900_000_000 * 10**9
    ),
    st.integers(min_value=-(2**63), max_value=-1),
)
fast_timestamps = st.one_of(
    nanoseconds,
    st.floats(min_value=0, max_value=4294967296.0, exclude_max=True),
    st.floats(min_value=1.6e9, max_value=1.9e9),
    st.integers(min_value=0, max_value=4_294_967_295_999).map(
        lambda ms: ms / 1000
    ),
    st.integers(min_value=0, max_value=4_294_967_295_999_999).map(
        lambda us: us / 1_000_000
    ),
)
timestamps = st.one_of(
    fast_timestamps,
    fast_timestamps,
    st.floats(min_value=0, max_value=9e9),
    st.floats(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from(
        [
            0.0,
            -0.0,
            1.001,
            0.999,
            1e-05,
            -1.5,
            4294967295.999999,
            4294967296.0,
            8999999999.999,
            9e9,
            1e17,
            -1e17,
            True,
            Real(1.5),
        ]
    ),
)
precisions = st.one_of(
    st.sampled_from(['ms', 'u', 's']),
    st.sampled_from(sorted(set(line_protocol.PRECISIONS.values()))),
)


# Plain points: what applications send all the time, which the fast path
# exists for.
PLAIN = 'abcdefghijklmnopqrstuvwxyz0123456789_-.:/'
plain_names = st.text(alphabet=PLAIN + ',= ', min_size=1, max_size=12)
plain_keys = plain_names.filter(lambda key: key != 'time')
plain_tag_sets = st.dictionaries(
    plain_keys, st.text(alphabet=PLAIN + ',= ', max_size=8), max_size=4
)
plain_field_sets = st.dictionaries(
    plain_keys,
    st.one_of(
        st.booleans(),
        st.integers(min_value=-INT64, max_value=INT64 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(
            alphabet=st.characters(
                min_codepoint=0,
                max_codepoint=0x7F,
                exclude_characters='"\\',
            ),
            max_size=20,
        ),
    ),
    min_size=1,
    max_size=5,
)
plain_timestamps = st.one_of(
    st.floats(min_value=0, max_value=4e9, exclude_max=True),
    st.floats(min_value=1.6e9, max_value=1.9e9),
    st.integers(min_value=0, max_value=3_999_999_999_999).map(
        lambda ms: ms / 1000
    ),
)
plain_nanoseconds = st.one_of(
    # Not at the very end of the 64-bit range, where a point moved a step
    # later would leave it (and is left to Python).
    st.integers(min_value=0, max_value=2**62),
    st.integers(
        min_value=1_600_000_000 * 10**9, max_value=1_900_000_000 * 10**9
    ),
)


@st.composite
def batches(draw: typing.Any) -> list[tuple[object, ...]]:
    """A few points of a few series, often at the same times.

    Each part of a point is plain (what the fast path is for) more often
    than not, and anything else otherwise.
    """

    def often(plain: typing.Any, other: typing.Any) -> typing.Any:
        return plain if draw(st.sampled_from([True, True, False])) else other

    series = [
        (
            draw(often(plain_names, names)),
            draw(often(plain_tag_sets, tag_sets)),
        )
        for _ in range(draw(st.integers(min_value=1, max_value=3)))
    ]
    used: list[object] = []
    points: list[tuple[object, ...]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        name, tags = draw(st.sampled_from(series))
        fields = draw(often(plain_field_sets, field_sets))
        if used and draw(st.booleans()):
            timestamp = draw(st.sampled_from(used))
        else:
            timestamp = draw(often(fast_timestamps, timestamps))
        used.append(timestamp)
        points.append((name, tags, fields, timestamp))
    return points


# The tests ------------------------------------------------------------------


def test_the_fast_path_is_compiled_unless_disabled() -> None:
    if PURE_PYTHON:
        assert line_protocol.fast_encode is None
        assert line_protocol.COMPILED is False
    else:
        if not line_protocol.COMPILED:
            pytest.fail(NOT_BUILT, pytrace=False)
        assert line_protocol.fast_encode is not None
    assert line_protocol.encode('m', {}, {'f': 1}, 1.0) == 'm f=1i 1000'


@settings(max_examples=400, deadline=None)
@given(
    points=batches(),
    precision=precisions,
    last=st.one_of(
        st.none(),
        st.builds(dict),
        st.dictionaries(
            st.sampled_from(['m', 'cpu', 'm,host=a', 'a\\,b']),
            st.lists(
                st.integers(min_value=-(2**53), max_value=2**53),
                min_size=2,
                max_size=2,
            ).map(sorted),
            max_size=2,
        ),
    ),
)
def test_the_fast_path_gives_the_python_line_or_none(
    points: list[tuple[object, ...]], precision: str, last: Last
) -> None:
    for name, tags, fields, timestamp in points:
        expected, line = compare(
            name, tags, fields, timestamp, precision, last
        )
        if line is not None:
            event('fast path: a line')
        elif expected is not None:
            event('fast path: left to Python')
        else:
            event('fast path: refused by Python')


@settings(max_examples=400, deadline=None)
@given(
    name=plain_names,
    tags=plain_tag_sets,
    fields=plain_field_sets,
    timestamp_and_precision=st.one_of(
        st.tuples(plain_timestamps, st.sampled_from(['ms', 'u', 's'])),
        st.tuples(
            st.floats(min_value=1e-4, max_value=9e9, exclude_max=True).filter(
                lambda seconds: math.frexp(seconds)[0] != 0.5
            ),
            st.just('n'),
        ),
        st.tuples(plain_nanoseconds, st.sampled_from(['n', 'u', 'ms', 's'])),
    ),
    unique=st.booleans(),
)
def test_the_fast_path_encodes_plain_points(
    name: str,
    tags: dict[str, str],
    fields: dict[str, object],
    timestamp_and_precision: tuple[float | int, str],
    unique: bool,
) -> None:
    timestamp, precision = timestamp_and_precision
    clear_caches()  # so that no cache fills up and empties meanwhile
    last: Last = {} if unique else None
    for _ in range(2):  # the second time, at the same time
        expected, line = compare(
            name, tags, fields, timestamp, precision, last
        )
        assert expected is not None
        assert line is not None, 'the fast path left a plain point to Python'


def test_points_of_one_series_at_one_time_get_consecutive_times() -> None:
    last: Last = {}

    def written(milliseconds: int, host: str = 'a') -> int | None:
        expected, line = compare(
            'runs', {'host': host}, {'f': 1}, milliseconds * 10**6, 'ms', last
        )
        assert line is not None or expected is None
        return None if line is None else time_of(line)

    assert [written(10_000) for _ in range(4)] == [
        10_000,
        10_001,
        10_002,
        10_003,
    ]
    assert written(10_002) == 10_004  # within the run: moved past it
    assert written(10_000) is None  # five past its time: refused by both
    assert written(9_000) == 9_000  # older than the run: stays
    assert last == {'runs,host=a': [10_000, 10_004]}
    assert written(10_000, 'b') == 10_000  # another series
    assert written(11_000) == 11_000  # after the run: a new run
    assert written(10_500) == 10_500  # older than the new run
    assert last == {
        'runs,host=a': [11_000, 11_000],
        'runs,host=b': [10_000, 10_000],
    }


def test_nanosecond_runs_step_a_microsecond() -> None:
    last: Last = {}
    time = 1_700_000_000_000_000_042
    lines = [compare('ns', {}, {'f': 1}, time, 'n', last)[1] for _ in range(3)]
    assert [time_of(line) for line in lines] == [
        time,
        time + 1000,
        time + 2000,
    ]


def test_times_given_in_seconds_are_not_moved() -> None:
    last: Last = {}
    for _ in range(3):
        line = compare('given', {}, {'f': 1}, 10.0, 'ms', last)[1]
        assert line == 'given f=1i 10000'
    assert last == {}


@pytest.fixture
def series_limit() -> typing.Iterator[typing.Callable[[int], None]]:
    """Set a series limit for both encoders; restore the real one after."""
    _speedups = speedups()
    original = line_protocol._SERIES_LIMIT

    def set_limit(limit: int) -> None:
        line_protocol._SERIES_LIMIT = limit
        _speedups.configure(
            line_protocol._prefix_cache,
            line_protocol._measurement_cache,
            line_protocol._field_key_cache,
            limit,
        )

    yield set_limit
    line_protocol._SERIES_LIMIT = original
    line_protocol._load_fast_path()


def test_a_new_series_beyond_the_limit_clears_the_runs(
    series_limit: typing.Callable[[int], None],
) -> None:
    series_limit(2)
    last: Last = {}
    five = 5 * 10**9
    for host in ('a', 'b', 'c'):
        assert compare('limit', {'host': host}, {'f': 1}, five, 'ms', last)[1]
    assert last == {'limit,host=c': [5_000, 5_000]}
    for host in ('d', 'c'):  # a known series is not a new one
        assert compare('limit', {'host': host}, {'f': 1}, five, 'ms', last)[1]
    assert last == {
        'limit,host=c': [5_000, 5_001],
        'limit,host=d': [5_000, 5_000],
    }


def test_tags_in_another_order_give_the_same_line() -> None:
    clear_caches()
    first = {'b': '2', 'a': '1', 'c': '3'}
    second = {'c': '3', 'a': '1', 'b': '2'}
    expected = 'order,a=1,b=2,c=3 f=1.5 2000'
    assert python('order', first, {'f': 1.5}, 2.0) == expected
    assert fast('order', first, {'f': 1.5}, 2.0) == expected
    # The prefix cache is keyed by the tags in insertion order.
    assert fast('order', second, {'f': 1.5}, 2.0) is None
    assert python('order', second, {'f': 1.5}, 2.0) == expected
    assert fast('order', second, {'f': 1.5}, 2.0) == expected
    # One series whatever the order.
    last: Last = {}
    two = 2 * 10**9
    assert time_of(compare('order', first, {'f': 1.5}, two, 'ms', last)[1])
    assert compare('order', second, {'f': 1.5}, two, 'ms', last)[1] == (
        'order,a=1,b=2,c=3 f=1.5 2001'
    )


def test_empty_tags() -> None:
    clear_caches()
    for tags in ({}, {'k': ''}, {'k': None}):
        assert python('empty', tags, {'f': 1}, 3.0) == 'empty f=1i 3000'
    assert fast('empty', {}, {'f': 1}, 3.0) == 'empty f=1i 3000'
    assert fast('empty', {'k': ''}, {'f': 1}, 3.0) == 'empty f=1i 3000'
    # Only tag sets of text alone are remembered.
    assert fast('empty', {'k': None}, {'f': 1}, 3.0) is None
    last: Last = {}
    lines = [
        compare('empty', tags, {'f': 1}, 3 * 10**9, 'ms', last)[0]
        for tags in ({}, {'k': ''}, {'k': None}, {'j': '', 'k': ''})
    ]
    assert lines == [
        'empty f=1i 3000',
        'empty f=1i 3001',
        'empty f=1i 3002',
        'empty f=1i 3003',
    ]
    assert last == {'empty': [3_000, 3_003]}


@pytest.mark.parametrize(
    ('value', 'text'),
    [
        (Colour.RED, '1i'),
        (Flag.A, '1i'),
        (Label('x'), '"x"'),
        (Real(1.5), '1.5'),
        (Mode.FAST, None),
    ],
)
def test_field_values_of_subclasses_are_left_to_python(
    value: object, text: str | None
) -> None:
    # bool cannot be subclassed; IntEnum and IntFlag are int subclasses.
    python('sub', {}, {'f': 1}, 1.0)
    assert fast('sub', {}, {'f': value}, 1.0) is None
    line = line_protocol.encode('sub', {}, {'f': value}, 1.0)
    assert line == python('sub', {}, {'f': value}, 1.0)
    if text is not None:
        assert line == f'sub f={text} 1000'
    compare('sub', {}, {'f': value}, 1.0, 'ms', {})


def test_exact_bools_ints_floats_and_text_take_the_fast_path() -> None:
    fields = {
        'yes': True,
        'no': False,
        'low': -(2**63),
        'high': 2**63 - 1,
        'zero': -0.0,
        'tiny': 5e-324,
        'big': 1e300,
        'sum': 0.1 + 0.2,
        'text': 'plain text, = with\nline',
        'empty': '',
    }
    expected = (
        'exact yes=true,no=false,low=-9223372036854775808i,'
        'high=9223372036854775807i,zero=-0.0,tiny=5e-324,big=1e+300,'
        'sum=0.30000000000000004,text="plain text, = with\nline",'
        'empty="" 1000'
    )
    assert python('exact', {}, fields, 1.0) == expected
    assert fast('exact', {}, fields, 1.0) == expected


def test_tag_values_of_subclasses_equal_to_cached_text() -> None:
    # A str subclass equal to a remembered tag value finds its prefix, in
    # both encoders alike.
    python('subtag', {'k': 'x'}, {'f': 1}, 1.0)
    line = fast('subtag', {'k': Label('x')}, {'f': 1}, 1.0)
    assert line == 'subtag,k=x f=1i 1000'
    assert line == python('subtag', {'k': Label('x')}, {'f': 1}, 1.0)
    for value in (Colour.RED, 1, 1.0, True):
        compare('subtag', {'k': value}, {'f': 1}, 1.0, 'ms', {})
        assert fast('subtag', {'k': value}, {'f': 1}, 1.0) is None


@pytest.mark.parametrize(
    ('timestamp', 'precision', 'expected'),
    [
        (1.001, 'ms', 1001),
        (1700000000.123, 'ms', 1700000000123),
        (0.999, 's', 0),
        (1.999, 's', 1),
        (1e-05, 'u', 10),
        (1.000001, 'u', 1000001),
        (1700000000.123456, 'u', 1700000000123456),
        (4294967295.999999, 'u', 4294967295999999),
        (8999999999.999, 'ms', 8999999999999),
        (8999999999.5, 's', 8999999999),
        (0.0, 'ms', 0),
        (-0.0, 'ms', 0),
        (1700000000.123, 'n', 1700000000123000000),
        (1700000000.1234567, 'n', 1700000000123456700),
        (8999999999.5, 'n', 8999999999500000000),
        (1_700_000_000_123_456_789, 'n', 1_700_000_000_123_456_789),
        (1_700_000_000_123_456_789, 'u', 1_700_000_000_123_456),
        (1_700_000_000_123_456_789, 'ms', 1_700_000_000_123),
        (1_700_000_000_123_456_789, 's', 1_700_000_000),
        (2**63 - 1, 'n', 2**63 - 1),
        (-1_500_000, 'ms', -1),
        (0, 'n', 0),
    ],
)
def test_timestamps_on_the_fast_path(
    timestamp: float, precision: str, expected: int
) -> None:
    python('ts', {}, {'f': 1}, 1.0)
    line = fast('ts', {}, {'f': 1}, timestamp, precision)
    assert line == f'ts f=1i {expected}'
    assert line == python('ts', {}, {'f': 1}, timestamp, precision)
    if isinstance(timestamp, float):
        assert str(expected) == line_protocol.exact_timestamp(
            timestamp, precision
        )


@pytest.mark.parametrize(
    ('timestamp', 'precision'),
    [
        (4294967296.0, 'u'),
        (9e9, 'ms'),
        (9e9, 's'),
        (-1.5, 'ms'),
        (-1e-300, 'ms'),
        (1e17, 'ms'),
        (0.5, 'n'),
        (-1.5, 'n'),
        (9e9, 'n'),
        (1e20, 'n'),
        (1.5, 'm'),
        (1.5, 'h'),
        (10**9, 'm'),
        (2**63, 'n'),
        (-(2**63) - 1, 'ms'),
        (True, 'ms'),
        (Real(1.5), 'ms'),
    ],
)
def test_other_timestamps_are_left_to_python(
    timestamp: float, precision: str
) -> None:
    python('ts', {}, {'f': 1}, 1.0)
    assert fast('ts', {}, {'f': 1}, timestamp, precision) is None
    compare('ts', {}, {'f': 1}, timestamp, precision, {})


@pytest.mark.parametrize(
    'value', ['héllo', 'snow ☃', '日本', 'say "hi"', 'back\\slash', 'x' * 5000]
)
def test_text_fields_the_fast_path_leaves_to_python(value: str) -> None:
    python('text', {}, {'f': 'plain'}, 1.0)
    assert fast('text', {}, {'f': value}, 1.0) is None
    expected, _ = compare('text', {}, {'f': value}, 1.0, 'ms', {})
    assert expected is not None


@pytest.mark.parametrize(
    'value',
    [
        float('nan'),
        float('inf'),
        -float('inf'),
        2**63,
        -(2**63) - 1,
        10**100,
        'x\udcff',
        None,
        b'bytes',
        [1],
    ],
)
def test_field_values_python_refuses_are_left_to_it(value: object) -> None:
    python('refused', {}, {'f': 1}, 1.0)
    assert fast('refused', {}, {'f': value}, 1.0, 'ms', {}) is None
    expected, _ = compare('refused', {}, {'f': value}, 1.0, 'ms', {})
    assert expected is None


def test_what_was_never_seen_is_left_to_python() -> None:
    clear_caches()
    assert fast('seen', {'k': 'v'}, {'f': 1}, 1.0) is None
    python('seen', {'k': 'v'}, {'f': 1}, 1.0)
    assert fast('seen', {'k': 'v'}, {'f': 1}, 1.0) == 'seen,k=v f=1i 1000'
    # A field key never seen.
    assert fast('seen', {'k': 'v'}, {'f': 1, 'fresh': 2}, 1.0) is None
    assert python('seen', {'k': 'v'}, {'f': 1, 'fresh': 2}, 1.0) == (
        'seen,k=v f=1i,fresh=2i 1000'
    )
    assert fast('seen', {'k': 'v'}, {'f': 1, 'fresh': 2}, 1.0) == (
        'seen,k=v f=1i,fresh=2i 1000'
    )
    # A tag value, a measurement name never seen.
    assert fast('seen', {'k': 'w'}, {'f': 1}, 1.0) is None
    assert fast('unseen', {}, {'f': 1}, 1.0) is None
    # The fast path reads the module's own caches.
    line_protocol._prefix_cache.clear()
    assert fast('seen', {'k': 'v'}, {'f': 1}, 1.0) is None
    python('seen', {'k': 'v'}, {'f': 1}, 1.0)
    line_protocol._field_key_cache.clear()
    assert fast('seen', {'k': 'v'}, {'f': 1}, 1.0) is None
    python('seen', {}, {'f': 1}, 1.0)
    assert fast('seen', {}, {'f': 1}, 1.0) == 'seen f=1i 1000'
    line_protocol._measurement_cache.clear()
    assert fast('seen', {}, {'f': 1}, 1.0) is None


def test_other_types_of_arguments_are_left_to_python() -> None:
    tags = {'k': 'v'}
    fields = {'f': 1}
    python('types', tags, fields, 1.0)
    assert fast('types', tags, fields, 1.0) == 'types,k=v f=1i 1000'
    calls: list[tuple[object, object, object, typing.Any]] = [
        (Label('types'), tags, fields, {}),
        ('types', collections.OrderedDict(tags), fields, {}),
        ('types', types.MappingProxyType(tags), fields, {}),
        ('types', tags, collections.OrderedDict(fields), {}),
        ('types', tags, types.MappingProxyType(fields), {}),
        ('types', tags, {Label('f'): 1}, {}),
        ('types', tags, fields, collections.OrderedDict()),
        ('types', {'k': [1]}, fields, {}),  # unhashable
        ('types', tags, {}, {}),  # no fields
    ]
    for name, tag_set, field_set, last in calls:
        assert fast(name, tag_set, field_set, 1.0, 'ms', last) is None
        assert not last
        compare(name, tag_set, field_set, 1.0, 'ms', last)


@pytest.mark.parametrize('size', range(4076, 4094))
@pytest.mark.parametrize('last', [{}, {'edge': [1000, 1000]}])
def test_lines_about_the_size_of_the_buffer(
    size: int, last: dict[str, list[int]]
) -> None:
    # 'edge f="x...x" 1000': the fast path's buffer holds 4096 bytes; near
    # that size the timestamp is what no longer fits.
    python('edge', {}, {'f': 'x'}, 1.0)
    compare('edge', {}, {'f': 'x' * size}, 1.0, 'ms', copy.deepcopy(last))


@pytest.mark.parametrize(
    'run',
    [
        [10**20, 10**20],
        [-(10**20), -(10**20)],
        [2**63, 2**63],
        [-(2**63) - 1, -(2**63) - 1],
    ],
)
def test_runs_beyond_64_bits_left_by_the_python_path(run: list[int]) -> None:
    # The Python encoder writes times beyond 64 bits, for instance for a
    # timestamp of time.time_ns() taken as seconds at ms precision; the
    # next point of that series must still be encoded.
    python('huge', {'k': 'v'}, {'f': 1}, 1.0)
    compare('huge', {'k': 'v'}, {'f': 1}, 10**9, 'ms', {'huge,k=v': run})


def test_a_huge_timestamp_does_not_break_the_series() -> None:
    last: Last = {}
    compare('huge', {'k': 'v'}, {'f': 1}, 10**25, 'ms', last)
    assert last == {'huge,k=v': [10**19] * 2}
    expected, _ = compare('huge', {'k': 'v'}, {'f': 1}, 10**9, 'ms', last)
    assert expected == 'huge,k=v f=1i 1000'


def _doubles(count: int, seed: int) -> list[float]:
    """Doubles from four distributions: log-uniform, rounded to a few
    decimals, any bit pattern, and integers over powers of two."""
    rng = random.Random(seed)
    values = []
    for index in range(count):
        mode = index % 4
        if mode == 0:
            value = 10 ** rng.uniform(-6.2, 16.2)
        elif mode == 1:
            value = round(10 ** rng.uniform(-6, 15.7), rng.randint(0, 10))
        elif mode == 2:
            (value,) = struct.unpack(
                '<d', struct.pack('<Q', rng.getrandbits(64))
            )
        else:
            value = rng.randint(1, 2**53) / 2 ** rng.randint(0, 60)
        values.append(-value if rng.random() < 0.5 else value)
    return values


def test_the_fast_float_text_is_repr() -> None:
    _speedups = speedups()
    fast = 0
    for value in _doubles(200_000, seed=20261125):
        text = _speedups.float_repr(value)
        if text is None:
            # Only what the fast digits leave to dtoa: zero, magnitudes
            # up to 1e-6 and from 2**52, powers of two, NaN and infinities.
            magnitude = abs(value)
            assert (
                not 1e-6 < magnitude < 2**52 or math.frexp(magnitude)[0] == 0.5
            ), value
        else:
            assert text == repr(value), value
            fast += 1
    assert fast > 100_000


@pytest.mark.parametrize(
    'value',
    [
        0.1,
        0.3,
        2.675,
        1e-4,
        0.00011,
        9.999999999999999e-05,
        1e-05,
        2.4216e-05,
        2.4215998564613983e-05,  # a duration as monotonic() gives it
        1.0000000000000002e-06,
        1.5e-06,
        1e-06,
        123456.789,
        4503599627370495.5,
        1234567890123456.8,
        732318598303257.2,  # a tie, to the even digit
        9007199254740.5,
        0.006445999715420643,
        99999999999999.98,
    ],
)
def test_float_text_at_the_edges(value: float) -> None:
    _speedups = speedups()
    assert _speedups.float_repr(value) in (None, repr(value))
    assert _speedups.float_repr(-value) in (None, repr(-value))


@pytest.mark.parametrize(
    ('value', 'text'),
    [
        (2.4215998564613983e-05, '2.4215998564613983e-05'),
        (1e-05, '1e-05'),
        (3.5e-06, '3.5e-06'),
        (1.0000000000000002e-06, '1.0000000000000002e-06'),
        (9.999999999999999e-05, '9.999999999999999e-05'),
        (0.0001, '0.0001'),
    ],
)
def test_short_durations_are_written_by_the_fast_digits(
    value: float, text: str
) -> None:
    """Below 1e-4 repr() writes an exponent; the fast digits do too.

    A request's duration in seconds is often there (tens of
    microseconds), with all 17 digits: written without dtoa's big
    integers.
    """
    _speedups = speedups()
    assert repr(value) == text
    assert _speedups.float_repr(value) == text
    assert _speedups.float_repr(-value) == '-' + text


def _encode_entries_in_python(
    values: list[object],
    base_tags: dict[str, str] | None,
    lasts: dict[str, Last],
) -> dict[str, tuple[list[object], list[str]]]:
    """What the writer does for each buffered entry without the fast path."""
    result: dict[str, tuple[list[object], list[str]]] = {}
    for index in range(0, len(values), 6):
        sequence, database, name, tags, fields, when = values[
            index : index + 6
        ]
        if base_tags:
            tags = {**base_tags, **tags}  # type: ignore[dict-item]
        try:
            line = line_protocol.encode_python(
                name,  # type: ignore[arg-type]
                tags,  # type: ignore[arg-type]
                fields,  # type: ignore[arg-type]
                when,  # type: ignore[arg-type]
                'ms',
                lasts.get(database),  # type: ignore[call-overload]
            )
        except (ValueError, TypeError):
            continue
        sequences, lines = result.setdefault(database, ([], []))  # type: ignore[arg-type]
        sequences.append(sequence)
        lines.append(line)
    return result


@settings(max_examples=300, deadline=None)
@given(
    points=batches(),
    databases=st.lists(
        st.sampled_from(['db', 'other']), min_size=8, max_size=8
    ),
    base_tags=st.sampled_from([None, {}, {'host': 'web-1'}, {'a': 'b'}]),
    known=st.sampled_from([(), ('db',), ('db', 'other')]),
    unique=st.booleans(),
)
def test_the_slice_fast_path_gives_the_python_lines(
    points: list[tuple[object, ...]],
    databases: list[str],
    base_tags: dict[str, str] | None,
    known: tuple[str, ...],
    unique: bool,
) -> None:
    fast_slice = speedups().encode_slice
    values: list[object] = []
    for sequence, (point, database) in enumerate(zip(points, databases)):
        values.extend((sequence, database, *point))
    expected_lasts: dict[str, Last] = {
        'db': {} if unique else None,
        'other': {} if unique else None,
    }
    expected = _encode_entries_in_python(values, base_tags, expected_lasts)

    # As the writer does it: the fast path up to the first entry it
    # leaves, that entry in Python, and on.
    outputs: dict[str, list[typing.Any]] = {
        database: [[], [], {} if unique else None] for database in known
    }
    at = 0
    while at < len(values):
        at = fast_slice(values, at, len(values), 'ms', base_tags, outputs)
        if at >= len(values):
            break
        entry = values[at : at + 6]
        at += 6
        output = outputs.setdefault(
            entry[1],  # type: ignore[arg-type]
            [[], [], {} if unique else None],
        )
        done = _encode_entries_in_python(
            entry,
            base_tags,
            {entry[1]: output[2]},  # type: ignore[dict-item]
        )
        for sequences, lines in done.values():
            output[0].extend(sequences)
            output[1].extend(lines)
    got = {
        database: (sequences, lines)
        for database, (sequences, lines, _) in outputs.items()
        if sequences
    }
    assert got == expected
    for database, output in outputs.items():
        if output[0]:
            assert output[2] == expected_lasts[database]


def test_the_slice_fast_path_with_tags_shared_by_entries() -> None:
    """Entries holding the very same tags dict, as request metrics queue.

    The slice reuses the head it encoded for the previous entry when the
    name and the tags are the same objects: with other names between,
    another shared dict, a copy of it and times two by two equal (kept
    apart), the lines are still those of the Python encoder.
    """
    fast_slice = speedups().encode_slice
    shared = {'endpoint': '/items/{id}', 'status_code': '200'}
    other = {'endpoint': '<unmatched>', 'status_code': '404'}
    kinds = [
        ('request', shared),
        ('request', shared),
        ('other', shared),
        ('request', other),
        ('request', shared),
        ('request', dict(shared)),
        ('request', shared),
    ]
    values: list[object] = []
    for sequence, (name, tags) in enumerate(kinds * 3):
        values.extend(
            (
                sequence,
                'db',
                name,
                tags,
                {'duration': sequence / 7, 'content_length': sequence},
                # Two by two at the same time: kept apart.
                1_700_000_000_000_000_000 + sequence // 2 * 1_000_000,
            )
        )
    expected = _encode_entries_in_python(values, None, {'db': {}})
    # As the writer does it: what the fast path leaves (a duration of
    # 1.0, say) in Python, and on.
    output: list[typing.Any] = [[], [], {}]
    at = left = 0
    while at < len(values):
        at = fast_slice(values, at, len(values), 'ms', None, {'db': output})
        if at < len(values):
            left += 1
            done = _encode_entries_in_python(
                values[at : at + 6], None, {'db': output[2]}
            )
            output[0].extend(done['db'][0])
            output[1].extend(done['db'][1])
            at += 6
    assert left < len(kinds) * 3 // 2
    assert (output[0], output[1]) == expected['db']
    assert len(set(output[1])) == len(kinds) * 3


# Both modes, end to end ------------------------------------------------------

BOTH_MODES_SCRIPT = """
import json, sys
import sprockets_influxdb as influxdb
from sprockets_influxdb import line_protocol

client = influxdb.Client(precision='us', tag_hostname=False)
names = ['request', 'caf\\u00e9 latency', 'a,b c']
for index in range(3000):
    measurement = influxdb.Measurement(sys.argv[1], names[index % 3])
    measurement.set_tags({
        'endpoint': f'/items/{index % 7}',
        'status_code': 200 + index % 5,
        'note': 'a space, comma=eq' if index % 11 == 0 else 'plain',
    })
    measurement.set_field('duration', index / 7919)
    measurement.set_field('size', index * 1021)
    measurement.set_field('ok', index % 3 == 0)
    measurement.set_field(
        'text', 'say "hi"' if index % 13 == 0 else f'r{index}'
    )
    measurement.set_timestamp(1_700_000_000 + index / 1000)
    client.add_measurement(measurement)
delivered = client.shutdown(timeout=60).result()
print(json.dumps({'compiled': line_protocol.COMPILED, 'delivered': delivered}))
"""


def test_both_modes_store_the_same_rows(influxdb: typing.Any) -> None:
    import json

    from tests.helpers import run_script

    stored = {}
    for mode, pure in (('compiled', '0'), ('python', '1')):
        influxdb.create_database(mode)
        result = run_script(
            BOTH_MODES_SCRIPT.replace('sys.argv[1]', repr(mode)),
            {
                'INFLUXDB_HOST': influxdb.host,
                'INFLUXDB_PORT': str(influxdb.port),
                'SPROCKETS_INFLUXDB_PURE_PYTHON': pure,
            },
        )
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report == {'compiled': pure == '0', 'delivered': True}
        stored[mode] = {
            name: influxdb.rows(mode, name)
            for name in ('request', 'café latency', 'a,b c')
        }
    assert sum(len(rows) for rows in stored['compiled'].values()) == 3000
    assert stored['compiled'] == stored['python']


class Name(str, enum.Enum):
    CPU = 'cpu'


class Key(str, enum.Enum):
    LOAD = 'load'
    HOST = 'host'


@pytest.mark.parametrize('pure', [True, False])
def test_str_enum_names_and_keys_are_written_as_their_text(
    pure: bool,
) -> None:
    clear_caches()
    encode = line_protocol.encode_python if pure else line_protocol.encode
    line = encode(Name.CPU, {Key.HOST: 'a'}, {Key.LOAD: 1.5}, 1.0)
    assert line == 'cpu,host=a load=1.5 1000'
    # The plain strings equal to them, cached since, give the same.
    assert encode('cpu', {'host': 'a'}, {'load': 1.5}, 2.0) == (
        'cpu,host=a load=1.5 2000'
    )


@pytest.mark.parametrize(('start', 'stop'), [(-6, 6), (3, 6), (6, 0)])
def test_the_slice_fast_path_checks_its_bounds(start: int, stop: int) -> None:
    fast_slice = speedups().encode_slice
    values = [0, 'db', 'm', {}, {'f': 1}, 1.0] * 2
    with pytest.raises(ValueError, match='start'):
        fast_slice(values, start, stop, 'ms', None, {'db': [[], [], None]})


# Objects that run Python code while a point is encoded ----------------------
# A tag value's __hash__ or __del__, a finalizer the cyclic garbage
# collector runs in the middle of an allocation: the fast path must hold
# what it uses, and a line it writes must be the Python encoder's.  A
# memory error there may go unnoticed in process, so these run in a fresh
# interpreter with Python's debug allocator (which fills freed memory and
# checks the bytes around each block), or with AddressSanitizer under
# .ci/sanitize (which sets PYTHONMALLOC=malloc, kept here).


def run_isolated(source: str) -> list[str]:
    """Run *source* in a fresh interpreter; return the lines it printed.

    Fails when it crashes, showing the end of what it wrote to stderr.
    """
    root = pathlib.Path(line_protocol.__file__).parents[1]
    environ = dict(os.environ, PYTHONPATH=str(root))
    environ.setdefault('PYTHONMALLOC', 'debug')
    result = subprocess.run(
        [sys.executable, '-c', textwrap.dedent(source)],
        env=environ,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (
        f'exit status {result.returncode}:\n{result.stderr[-4000:]}'
    )
    return result.stdout.splitlines()


def test_a_tag_value_whose_finalizer_empties_the_prefix_cache() -> None:
    # The head of the line comes from the prefix cache; releasing the
    # lookup key may run the finalizer of a tag value it alone holds,
    # which may empty the cache and so free the head (issue 11).
    printed = run_isolated(
        """
        from sprockets_influxdb import _speedups, line_protocol

        _speedups.configure(
            line_protocol._prefix_cache, line_protocol._measurement_cache,
            line_protocol._field_key_cache, line_protocol._SERIES_LIMIT)
        tags = {}

        class Sneaky(str):
            def __hash__(self):
                tags.clear()  # the lookup key is left its only holder
                return str.__hash__(self)

            def __del__(self):
                line_protocol._prefix_cache.clear()

        line_protocol.encode_python('m', {'t': 'v'}, {'f': 1}, 1.0)
        tags['t'] = Sneaky('v')
        print(_speedups.encode('m', tags, {'f': 1}, 1.0, 'ms', None))
        line_protocol.encode_python('m', {'t': 'v'}, {'f': 1}, 1.0)
        tags['t'] = Sneaky('v')
        outputs = {'db': [[], [], None]}
        values = [7, 'db', 'm', tags, {'f': 2}, 2.0]
        print(_speedups.encode_slice(values, 0, 6, 'ms', None, outputs))
        print(outputs['db'][:2])
        """
    )
    assert printed == [
        'm,t=v f=1i 1000',
        '6',
        "[[7], ['m,t=v f=2i 2000']]",
    ]


GROWING_TAGS_SCRIPT = """
import gc
from sprockets_influxdb import _speedups, line_protocol

_speedups.configure(
    line_protocol._prefix_cache, line_protocol._measurement_cache,
    line_protocol._field_key_cache, line_protocol._SERIES_LIMIT)
# More than 20 items: the lookup key is a new tuple, not a recycled one,
# and allocating it may run the cyclic garbage collector (3.11 and older).
tags = {f't{index}': 'v' for index in range(10)}
fields = {'f': 1}
line_protocol.encode_python('m', tags, fields, 1.0)


change = CHANGE


class Finalized:
    def __del__(self):
        change(tags)


encode = _speedups.encode
gc.disable()
gc.collect()
garbage = Finalized()
garbage.cycle = garbage
del garbage
allocated = [[], [], []]  # more than the threshold since the collection
gc.set_threshold(1)
gc.enable()
line = encode('m', tags, fields, 1.0, 'ms', None)
gc.set_threshold(700)
print(line or line_protocol.encode_python('m', tags, fields, 1.0))
"""


@pytest.mark.parametrize(
    ('change', 'keys'),
    [
        (
            'lambda tags: tags.update({f"t{i}": "v" for i in range(10, 60)})',
            range(60),
        ),
        ('lambda tags: [tags.pop(f"t{i}") for i in range(2, 10)]', range(2)),
    ],
    ids=['grow', 'shrink'],
)
def test_tags_changed_by_a_finalizer_while_the_lookup_key_is_made(
    change: str, keys: range
) -> None:
    # The key is sized before it is allocated, and the allocation may run
    # the collector, whose finalizers may add or remove tags: the tags
    # must not be written past the end of the key, nor a key with holes
    # hashed (issue 11).
    printed = run_isolated(GROWING_TAGS_SCRIPT.replace('CHANGE', change))
    tags = ','.join(f'{key}=v' for key in sorted(f't{i}' for i in keys))
    assert printed == [f'm,{tags} f=1i 1000']


def test_runs_whose_release_runs_code() -> None:
    # A run the library did not write is replaced (see the test below);
    # releasing the old one may run finalizers that change ``last``, and
    # reading it must not run code that frees it (issue 11).
    printed = run_isolated(
        """
        from sprockets_influxdb import _speedups, line_protocol

        _speedups.configure(
            line_protocol._prefix_cache, line_protocol._measurement_cache,
            line_protocol._field_key_cache, line_protocol._SERIES_LIMIT)

        class Finalized(int):
            def __del__(self):
                last.clear()

        class Index:
            def __index__(self):
                last.clear()
                return 1000

        line_protocol.encode_python('m', {'t': 'v'}, {'f': 1}, 1.0)
        for make in (
            lambda: [Finalized(0), Finalized(1000)],
            lambda: [0, Index()],
            lambda: [Finalized(5), 9],
        ):
            for encode in (_speedups.encode, line_protocol.encode_python):
                last = {'m,t=v': make()}
                line = encode('m', {'t': 'v'}, {'f': 1}, 10**9, 'ms', last)
                print(line, last)
        """
    )
    assert printed == [
        'm,t=v f=1i 1000 {}',
        'm,t=v f=1i 1000 {}',
        "m,t=v f=1i 1000 {'m,t=v': [1000, 1000]}",
        "m,t=v f=1i 1000 {'m,t=v': [1000, 1000]}",
        'm,t=v f=1i 1000 {}',
        'm,t=v f=1i 1000 {}',
    ]


class RunList(list):  # type: ignore[type-arg]
    pass


class Whole(int):
    pass


@pytest.mark.parametrize(
    'run',
    [
        [0, 1000.5],
        [999.5, 1000],
        [0, True],
        [False, 1000],
        [0, '1000'],
        [Whole(0), Whole(1000)],
        [0],
        [0, 1000, 1001],
        [],
        (0, 1000),
        RunList([0, 1000]),
        'run',
        1000,
    ],
    ids=lambda run: f'{type(run).__name__}{run!r}',
)
def test_a_run_the_library_did_not_write_starts_afresh(run: object) -> None:
    # ``last`` holds what the encoder wrote: lists of two ints.  Anything
    # else there is not a run of this series: the point keeps its time
    # and the run starts again from it, on both paths (a float end used to
    # give a float time, a str one a TypeError; issue 11).
    line_protocol.encode_python('cpu', {}, {'f': 1}, 1.0)
    for encode in (fast, python, line_protocol.encode):
        last: typing.Any = {'cpu': copy.copy(run), 'other': [5, 5]}
        line = encode('cpu', {}, {'f': 1}, 10**9, 'ms', last)
        assert line == 'cpu f=1i 1000'
        assert last == {'cpu': [1000, 1000], 'other': [5, 5]}
        assert type(last['cpu']) is list
        assert [type(time) for time in last['cpu']] == [int, int]
        # And the next point of the series is kept apart from it.
        assert encode('cpu', {}, {'f': 2}, 10**9, 'ms', last) == (
            'cpu f=2i 1001'
        )


def test_the_output_of_a_database_freed_as_the_previous_one_is_released() -> (
    None
):
    # encode_slice holds the database and the lists of the last output it
    # used; moving to another database releases them, which may run the
    # finalizer of the previous database, which may empty ``outputs`` and
    # so free the output being read (issue 11).
    printed = run_isolated(
        """
        from sprockets_influxdb import _speedups, line_protocol

        _speedups.configure(
            line_protocol._prefix_cache, line_protocol._measurement_cache,
            line_protocol._field_key_cache, line_protocol._SERIES_LIMIT)
        line_protocol.encode('m', {'k': 'v'}, {'f': 1}, 1.0)

        class Database(str):
            def __del__(self):
                outputs.clear()  # frees the output of db2

        class Value(str):
            def __hash__(self):
                # The slice is left the only holder of db1.
                values[1] = 'db1'
                del outputs['db1']
                return str.__hash__(self)

        db1 = Database('db1')
        sequences, lines = [], []  # the output of db2 held by outputs alone
        outputs = {db1: [[], [], None], 'db2': [sequences, lines, None]}
        values = [
            7, db1, 'm', {'k': Value('v')}, {'f': 1}, 1.0,
            8, 'db2', 'm', {'k': 'v'}, {'f': 2}, 2.0,
        ]
        del db1
        print(_speedups.encode_slice(values, 0, 12, 'ms', None, outputs))
        print(outputs, sequences, lines)
        """
    )
    assert printed == ['12', "{} [8] ['m,k=v f=2i 2000']"]


# Laid out so that, read as a str, it passes for a compact ASCII one: its
# first byte is the str's state (compact, ASCII), and its length is the
# str's length.  The cached values a finalizer may have put there are
# checked first (issue 11).
STR_LOOKALIKE = bytes([0xE4]) + bytes(15) + b'm,k=v'


@pytest.mark.parametrize(
    'bad',
    ['STR_LOOKALIKE', '7', 'Text("m,k=v")', '"m,k=é"'],
    ids=['bytes', 'int', 'str-subclass', 'non-ascii'],
)
def test_cached_values_that_are_not_ascii_text_are_left_to_python(
    bad: str,
) -> None:
    # The prefix, measurement and field key caches are the Python
    # encoder's own dicts: what is there when a point is encoded may be
    # anything code put there (a finalizer, say).
    printed = run_isolated(
        f"""
        from sprockets_influxdb import _speedups, line_protocol

        _speedups.configure(
            line_protocol._prefix_cache, line_protocol._measurement_cache,
            line_protocol._field_key_cache, line_protocol._SERIES_LIMIT)

        class Text(str):
            pass

        STR_LOOKALIKE = {STR_LOOKALIKE!r}
        for cache, key in (
            (line_protocol._prefix_cache, ('m', 'k', 'v')),
            (line_protocol._measurement_cache, 'm'),
            (line_protocol._field_key_cache, 'f'),
        ):
            line_protocol.encode_python('m', {{'k': 'v'}}, {{'f': 1}}, 1.0)
            line_protocol.encode_python('m', {{}}, {{'f': 1}}, 1.0)
            good = cache[key]
            cache[key] = {bad}
            for tags in ({{'k': 'v'}}, {{}}):
                print(_speedups.encode('m', tags, {{'f': 1}}, 1.0, 'ms', None))
            cache[key] = good
        """
    )
    assert printed == [
        'None',
        'm f=1i 1000',
        'm,k=v f=1i 1000',
        'None',
        'None',
        'None',
    ]


MEASUREMENT_SCRIPT = r"""
import datetime, enum, json
import sprockets_influxdb as influxdb
from sprockets_influxdb import _speedups, measurement as module

class Name(str, enum.Enum):
    HOST = 'host'

base = getattr(_speedups, 'MeasurementBase', ())
out = {'compiled': isinstance(influxdb.Measurement('db', 'm'), base)}
calls = [
    ('init', ('db', 'm'), {}), ('init', ('', 'm'), {}), ('init', (1, 'm'), {}),
    ('init', ('db', ''), {}), ('init', ('db', 'a\nb'), {}),
    ('init', (), {'database': 'db', 'name': 'm'}), ('init', ('db',), {}),
    ('tag', ('host', 'a'), {}), ('tag', ('host', 'a'), {}),
    ('tag', ('host', None), {}), ('tag', ('host', ''), {}),
    ('tag', ('n', 5), {}), ('tag', ('e', Name.HOST), {}),
    ('tag', (Name.HOST, 'x'), {}), ('tag', ('', 'x'), {}),
    ('tag', ('k', 'a\nb'), {}), ('tag', ('k', 'caf\u00e9'), {}),
    ('tag', (), {'name': 'kw', 'value': 'v'}), ('tag', ('only',), {}),
    ('field', ('f', 1.5), {}), ('field', ('f', 1.5), {}),
    ('field', ('f', float('nan')), {}), ('field', ('f', float('inf')), {}),
    ('field', ('i', 2**63), {}), ('field', ('i', -2**63), {}),
    ('field', ('b', True), {}), ('field', ('s', 'caf\u00e9'), {}),
    ('field', ('s', 'plain'), {}), ('field', ('', 1), {}),
    ('field', ('x', None), {}), ('field', ('x', [1]), {}),
    ('field', (Name.HOST, 1), {}), ('field', (), {'name': 'kw', 'value': 1}),
    ('time', (1.5,), {}), ('time', (float('nan'),), {}),
    ('time', (float('inf'),), {}), ('time', (3,), {}), ('time', (True,), {}),
    ('time', ('1',), {}), ('time', (1.5,), {'unique': True}),
    ('time', (datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),),
     {}),
    ('time', (), {'value': 2.5}),
]
point = influxdb.Measurement('db', 'm')
for kind, args, kwargs in calls:
    try:
        if kind == 'init':
            made = influxdb.Measurement(*args, **kwargs)
            result = [made.database, made.name, made.tags, made.fields,
                      type(made._time).__name__]
        else:
            method = {'tag': point.set_tag, 'field': point.set_field,
                      'time': point.set_timestamp}[kind]
            method(*args, **kwargs)
            when = point._time
            if kwargs.get('unique'):
                when = type(when).__name__  # ends in the process id
            result = [point.tags, point.fields, repr(when)
                      if kind == 'time' else None]
    except Exception as error:
        result = [type(error).__name__, str(error)]
    out.setdefault('results', []).append(repr(result))
print(json.dumps(out))
"""


def test_the_compiled_measurement_answers_as_the_python_one() -> None:
    import json

    from tests.helpers import run_script

    answers = {}
    for pure in ('0', '1'):
        result = run_script(
            MEASUREMENT_SCRIPT,
            {'SPROCKETS_INFLUXDB_PURE_PYTHON': pure, 'INFLUXDB_TAGS': ''},
        )
        assert result.returncode == 0, result.stderr
        answers[pure] = json.loads(result.stdout)
    assert answers['0']['compiled'] is not PURE_PYTHON
    assert answers['1']['compiled'] is False
    assert answers['0']['results'] == answers['1']['results']
    # Errors are among them, named by the setters.
    assert any('ValueError' in line for line in answers['1']['results'])


def test_the_compiled_measurement_keeps_the_python_documentation() -> None:
    from sprockets_influxdb import measurement

    # In either mode, help() and the API reference show the setters' text.
    for name in ('set_tag', 'set_field', 'set_timestamp'):
        method = getattr(measurement.Measurement, name)
        assert method.__doc__, name
        assert 'param' in method.__doc__


def test_join_lines_is_the_body_python_makes() -> None:
    _speedups = speedups()
    for lines in (
        [],
        ['a'],
        ['cpu f=1i 1', 'cpu,t=x f="a b\\nc" 2'],
        ['x' * 5000] * 3,
    ):
        assert _speedups.join_lines(lines) == '\n'.join(lines).encode('utf-8')
    # Not ASCII, or not text: left to Python.
    assert _speedups.join_lines(['caf\u00e9 f=1i 1']) is None
    assert _speedups.join_lines(['a', 1]) is None


class _Hostile(str):
    """A route template whose comparison raises."""

    __hash__ = str.__hash__

    def __eq__(self, other: object) -> bool:
        raise RuntimeError('no comparing me')


def test_the_compiled_request_record_on_odd_arguments(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Arguments the compiled ``_finish`` leaves to Python, or fails on.

    Subclasses, floats and odd objects go to the Python method and give
    what it gives; an error raised in the common case is logged as the
    Python method logs it, the request marked recorded; nothing crashes
    (``.ci/sanitize`` runs this under AddressSanitizer).
    """
    from sprockets_influxdb import Client, buffer, request_metrics

    client = Client(
        url='http://127.0.0.1:9/',
        submission_interval=10**9,
        trigger_size=10**9,
        max_buffer_size=10**9,
        shutdown_timeout=0,
    )
    recorder = request_metrics.RequestRecorder(
        'db', 'web', add_measurement=client.add_measurement
    )

    class Status(int):
        pass

    cases: list[tuple[typing.Any, ...]] = [
        (200, '/a', 'h.a', 1, None, False, None),
        (Status(201), '/a', 'h.a', 1, None, False, None),
        (202, '/a', 'h.a', True, None, 0, None),
        (203, '/a', 'h.a', 3, None, [], 1.5),
        (204, '/a', ('h', 'a'), 0, None, 1, None),
        (200, None, 'h.a', 2, ValueError('x'), False, None),
        (200, '/a', 'h.a', 4, None, False, Status(2)),
    ]
    expected = []
    compiled = request_metrics._compiled is not None
    for case in cases:
        for method in ('_finish_py', '_finish'):
            record = recorder.start('GET')
            assert record is not None
            if case[-1] is not None:
                record.started = 1.0
            getattr(record, method)(*case)
            assert record.finished
            entries = list(buffer.entries(client._buffer.take()))
            assert len(entries) == 1, (case, method)
            _, database, name, tags, fields, _ = entries[0]
            if case[-1] is not None:
                assert fields['duration'] == case[-1] - 1.0
            del fields['duration']
            expected.append((method, database, name, tags, fields))
    pairs = list(zip(expected[::2], expected[1::2]))
    assert [python[1:] for python, _ in pairs] == [
        compiled[1:] for _, compiled in pairs
    ]
    assert pairs[4][0][3]['handler'] == str(('h', 'a'))

    record = recorder.start('GET')
    assert record is not None
    record._finish(200, _Hostile('/h'), 'h.h', 0, None, False, None)
    assert record.finished
    assert 'Could not record a request measurement: RuntimeError' in (
        caplog.text
    )
    assert list(buffer.entries(client._buffer.take())) == []
    if compiled:
        with pytest.raises(TypeError, match='takes status'):
            record._finish(200)  # type: ignore[call-arg]
    client._buffer.clear()


# A client that only buffers: nothing listens where it would write.
_BUFFERING: dict[str, typing.Any] = {
    'url': 'http://127.0.0.1:9/',
    'submission_interval': 10**9,
    'trigger_size': 10**9,
    'max_buffer_size': 10**9,
    'shutdown_timeout': 0,
    'tag_hostname': False,
}


def _recorded(
    client: typing.Any, handler: bool = False
) -> list[tuple[object, ...]]:
    """The request summary of each point *client* buffered (see
    :func:`tests.helpers.request_summary`); the buffer is emptied."""
    from sprockets_influxdb import buffer
    from tests.helpers import request_summary

    try:
        return [
            request_summary({**tags, **fields}, handler)
            for _, _, _, tags, fields, _ in buffer.entries(
                client._buffer.take()
            )
        ]
    finally:
        client._buffer.clear()


def test_the_compiled_wsgi_record_on_every_shape_of_response() -> None:
    """The WSGI middleware's record on every shape of request and response.

    The requests of :mod:`tests.wsgi_shapes`, in-process with a client
    that buffers them, are recorded as expected, and nothing crashes
    (``.ci/sanitize`` runs this under AddressSanitizer; the comparison
    with pure Python mode is in ``tests/integrations/test_wsgi.py``).
    """
    from sprockets_influxdb import Client
    from tests import wsgi_shapes

    client = Client(**_BUFFERING)
    try:
        outcomes, closed = wsgi_shapes.serve_all('db', 'web', client)
        recorded = _recorded(client)
    finally:
        client.shutdown().result(timeout=30)
    assert recorded == wsgi_shapes.EXPECTED
    assert wsgi_shapes.compiled() is not PURE_PYTHON
    assert closed == [1, 1]
    assert [outcome[2] for outcome in outcomes].count('BrokenPipeError') == 3


def test_the_compiled_asgi_record_on_every_shape_of_request() -> None:
    """The ASGI middleware's record on every shape of request and message.

    The requests of :mod:`tests.asgi_shapes`, in-process with a client
    that buffers them, are recorded as expected, and nothing crashes
    (``.ci/sanitize`` runs this under AddressSanitizer; the comparison
    with pure Python mode is in ``tests/integrations/test_asgi.py``).
    """
    import asyncio

    from sprockets_influxdb import Client
    from tests import asgi_shapes

    client = Client(**_BUFFERING)
    try:
        outcomes = asyncio.run(asgi_shapes.serve_all('db', 'web', client))
        recorded = _recorded(client)
    finally:
        client.shutdown().result(timeout=30)
    assert recorded == asgi_shapes.EXPECTED
    assert asgi_shapes.compiled() is not PURE_PYTHON
    refused = asgi_shapes.REQUESTS.index(
        ('starlette', 'GET', '/stream', 'refused')
    )
    assert outcomes[refused][1] is not None  # the server's error, raised


def test_the_compiled_tornado_record_on_every_shape_of_request() -> None:
    """The Tornado mixin's record on every shape of request and response.

    The requests of :mod:`tests.tornado_shapes`, with a default client
    that buffers them, are recorded as expected, and nothing crashes
    (``.ci/sanitize`` runs this under AddressSanitizer; the comparison
    with pure Python mode is in ``tests/integrations/test_tornado.py``).
    """
    import asyncio

    import sprockets_influxdb
    from tests import tornado_shapes

    sprockets_influxdb.install(**_BUFFERING)
    try:
        outcomes = asyncio.run(tornado_shapes.serve_all('db', 'web'))
        recorded = _recorded(sprockets_influxdb.default_client(), True)
    finally:
        sprockets_influxdb.shutdown().result(timeout=30)
    assert recorded == tornado_shapes.EXPECTED
    assert [entry[3] for entry in recorded] == tornado_shapes.received(
        outcomes
    )
    assert tornado_shapes.compiled() is not PURE_PYTHON
    assert [status for status, _ in outcomes].count(200) == 12
