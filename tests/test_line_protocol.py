"""The encoder: exact lines for known inputs, ValueError for the rest.

The property tests in test_roundtrip.py check the same encoder against a
real server; these pin the exact text.
"""

from __future__ import annotations

import datetime
import enum
import gc
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sprockets_influxdb import Measurement, line_protocol


def make(name: str = 'm', **fields: object) -> Measurement:
    measurement = Measurement('db', name)
    measurement.tags.clear()
    measurement.set_timestamp(1700000000.123)
    for key, value in (fields or {'f': 1}).items():
        measurement.set_field(key, value)  # type: ignore[arg-type]
    return measurement


def test_field_types_are_written_as_influxdb_types() -> None:
    measurement = make(b=True, n=False, i=42, f=1.5, s='text', d='123')
    assert measurement.marshall() == (
        'm b=true,n=false,i=42i,f=1.5,s="text",d="123" 1700000000123'
    )


def test_floats_keep_full_precision() -> None:
    measurement = make(x=0.1 + 0.2, big=1e300, tiny=5e-324, whole=3.0)
    line = measurement.marshall()
    assert 'x=0.30000000000000004' in line
    assert 'big=1e+300' in line
    assert 'tiny=5e-324' in line
    assert 'whole=3.0' in line


def test_integer_limits() -> None:
    line = make(lo=-(2**63), hi=2**63 - 1).marshall()
    assert f'lo={-(2**63)}i,hi={2**63 - 1}i' in line
    with pytest.raises(ValueError, match=r"field 'big'.*64-bit"):
        make().set_field('big', 2**63)
    with pytest.raises(ValueError, match=r"field 'small'.*64-bit"):
        make().set_field('small', -(2**63) - 1)


@pytest.mark.parametrize('value', [float('nan'), float('inf'), -float('inf')])
def test_non_finite_floats_are_refused_at_set_field(value: float) -> None:
    measurement = make()
    with pytest.raises(ValueError, match="field 'x'"):
        measurement.set_field('x', value)
    assert 'x' not in measurement.fields


@pytest.mark.parametrize('value', [None, b'bytes', [1], {'a': 1}, 1j])
def test_other_types_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="field 'x' must be a bool"):
        make().set_field('x', value)  # type: ignore[arg-type]


def test_subclasses_are_written_as_their_base_type() -> None:
    class Colour(enum.IntEnum):
        RED = 1

    class Name(str):
        pass

    line = make(c=Colour.RED, n=Name('x')).marshall()
    assert 'c=1i,n="x"' in line


def test_string_fields_escape_backslash_and_quote_and_keep_newlines() -> None:
    line = make(s='a "b" \\ c\nd').marshall()
    assert line == 'm s="a \\"b\\" \\\\ c\nd" 1700000000123'


def test_names_keys_and_tag_values_are_escaped() -> None:
    measurement = Measurement('db', 'my measurement,x=1')
    measurement.tags.clear()
    measurement.set_timestamp(1)
    measurement.set_tag('tag key,=', 'tag value,=x')
    measurement.set_field('field key,= ', 'v')
    assert measurement.marshall() == (
        'my\\ measurement\\,x=1,tag\\ key\\,\\==tag\\ value\\,\\=x '
        'field\\ key\\,\\=\\ ="v" 1000'
    )


def test_tags_are_sorted_and_empty_ones_left_out() -> None:
    measurement = make()
    measurement.set_tags({'zeta': 'z', 'alpha': 'a', 'mid': 3, 'none': ''})
    assert (
        measurement.marshall() == 'm,alpha=a,mid=3,zeta=z f=1i 1700000000123'
    )
    assert 'none' not in measurement.tags


def test_no_tags_means_no_trailing_comma() -> None:
    assert make().marshall() == 'm f=1i 1700000000123'


def test_tag_values_are_converted_with_str_and_none_removes() -> None:
    measurement = make()
    measurement.set_tag('status', 200)
    assert measurement.tags['status'] == '200'
    measurement.set_tag('status', None)
    assert 'status' not in measurement.tags


@pytest.mark.parametrize(
    ('setter', 'match'),
    [
        (lambda m: m.set_tag('k', 'a\nb'), "tag value 'a\\\\nb'.*line break"),
        (lambda m: m.set_tag('k', 'a\rb'), 'line break'),
        (lambda m: m.set_tag('k\n', 'v'), 'tag key.*line break'),
        (lambda m: m.set_tag('k', 'a\\'), 'ends with a backslash'),
        (lambda m: m.set_tag('k', 'a\\ b'), 'backslash before'),
        (lambda m: m.set_tag('k', 'a\\,b'), 'backslash before'),
        (lambda m: m.set_tag('k', 'a\\=b'), 'backslash before'),
        (lambda m: m.set_tag('k', 'a\\"b'), 'backslash before'),
        (lambda m: m.set_tag('', 'v'), 'tag key must not be empty'),
        (lambda m: m.set_tag('time', 'v'), 'tag key "time"'),
        (lambda m: m.set_tag('k', '\ud800'), 'not valid Unicode'),
        (lambda m: m.set_field('time', 1), 'field key "time"'),
        (lambda m: m.set_field('f\n', 1), 'field key.*line break'),
        (lambda m: m.set_field('f\\', 1), 'field key.*backslash'),
        (lambda m: m.set_field('', 1), 'field key must not be empty'),
        (lambda m: m.set_field('s', 'x\udcff'), 'not valid Unicode'),
    ],
)
def test_what_line_protocol_cannot_carry_is_refused_when_set(
    setter, match: str
) -> None:
    measurement = make()
    before = (dict(measurement.tags), dict(measurement.fields))
    with pytest.raises(ValueError, match=match):
        setter(measurement)
    assert (measurement.tags, measurement.fields) == before


@pytest.mark.parametrize(
    ('name', 'match'),
    [
        ('a\nb', 'measurement name.*line break'),
        ('ab\\', 'ends with a backslash'),
        ('#comment', 'starts with "#"'),
        ('', 'must not be empty'),
    ],
)
def test_bad_measurement_names_are_refused(name: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Measurement('db', name)


def test_database_must_be_a_non_empty_string() -> None:
    with pytest.raises(ValueError, match='database'):
        Measurement('', 'm')


def test_set_tags_validates_everything_before_setting_anything() -> None:
    measurement = make()
    with pytest.raises(ValueError, match='line break'):
        measurement.set_tags({'good': 'yes', 'bad': 'x\ny'})
    assert 'good' not in measurement.tags


def test_values_set_directly_are_still_checked_when_encoding() -> None:
    measurement = make()
    measurement.tags['bad'] = 'x\ny'
    with pytest.raises(ValueError, match='line break'):
        measurement.marshall()
    measurement = make()
    measurement.fields['nan'] = float('nan')
    with pytest.raises(ValueError, match="field 'nan'"):
        measurement.marshall()


def test_marshall_without_fields_is_an_error() -> None:
    measurement = Measurement('db', 'm')
    with pytest.raises(ValueError, match='no fields'):
        measurement.marshall()


@pytest.mark.parametrize(
    ('precision', 'expected'),
    [
        ('s', '1700000000'),
        ('ms', '1700000000123'),
        ('u', '1700000000123456'),
        ('us', '1700000000123456'),
        ('ns', '1700000000123456000'),
        ('m', '28333333'),
        ('h', '472222'),
    ],
)
def test_timestamps_are_truncated_at_the_precision(
    precision: str, expected: str
) -> None:
    measurement = make()
    measurement.set_timestamp(1700000000.123456)
    assert measurement.marshall(precision).endswith(f' {expected}')


def test_timestamp_truncation_uses_the_decimal_digits() -> None:
    # 1700000000.123 * 1000 is 1700000000122.9998 in binary arithmetic.
    assert line_protocol.format_timestamp(1700000000.123, 'ms') == (
        '1700000000123'
    )
    assert line_protocol.format_timestamp(0.999, 's') == '0'
    assert line_protocol.format_timestamp(1.001, 'ms') == '1001'
    assert line_protocol.format_timestamp(1e-05, 'u') == '10'
    assert line_protocol.format_timestamp(-1.5, 'ms') == '-1500'


def test_timestamps_accept_datetimes() -> None:
    measurement = make()
    moment = datetime.datetime(
        2024, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.timezone.utc
    )
    measurement.set_timestamp(moment)
    assert measurement.marshall('u').endswith(' 1704164645678901')


@pytest.mark.parametrize('value', [float('nan'), 'now', True, None])
def test_bad_timestamps_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match='timestamp'):
        make().set_timestamp(value)  # type: ignore[arg-type]


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision 'q'"):
        make().marshall('q')


def test_duration_records_even_when_the_block_raises() -> None:
    measurement = make()
    with pytest.raises(RuntimeError), measurement.duration('elapsed'):
        raise RuntimeError('boom')
    elapsed = measurement.fields['elapsed']
    assert isinstance(elapsed, float)
    assert elapsed >= 0


def test_new_measurements_start_with_a_copy_of_the_base_tags() -> None:
    first = Measurement('db', 'm')
    first.tags['mine'] = 'x'
    second = Measurement('db', 'm')
    assert 'mine' not in second.tags


def test_each_measurements_tags_and_fields_are_its_own() -> None:
    """However a measurement is changed first (a setter, its dicts, new
    dicts), the change reaches no other measurement nor the base tags, and
    what it queues is what it holds then."""
    base = dict(Measurement('db', 'm').tags)
    by_setter, by_dict = Measurement('db', 'm'), Measurement('db', 'm')
    field_dict, field_setter = Measurement('db', 'm'), Measurement('db', 'm')
    untouched = Measurement('db', 'm')
    assert untouched._snapshot() == (base, {})
    by_setter.set_tag('mine', 'x')
    by_dict.tags['other'] = 'y'
    field_dict.fields['f'] = 1
    field_setter.set_field('g', 2.5)
    assert by_setter.tags == {**base, 'mine': 'x'}
    assert by_dict.tags == {**base, 'other': 'y'}
    assert field_dict.tags == field_setter.tags == untouched.tags == base
    assert Measurement('db', 'm').tags == base
    assert field_dict.fields == {'f': 1}
    assert field_setter.fields == {'g': 2.5}
    assert by_setter.fields == by_dict.fields == untouched.fields == {}
    assert by_setter.fields is not by_dict.fields
    assert field_dict._snapshot() == (base, {'f': 1})
    assert by_dict._snapshot() == ({**base, 'other': 'y'}, {})
    # The dicts read are the measurement's: changed later, still its own.
    tags, fields = untouched.tags, untouched.fields
    assert untouched.tags is tags
    assert untouched.fields is fields
    tags['late'] = 'z'
    fields['late'] = 1
    assert untouched._snapshot() == ({**base, 'late': 'z'}, {'late': 1})
    assert 'late' not in Measurement('db', 'm').tags
    replaced = Measurement('db', 'm')
    replaced.tags = {'t': 'v'}
    replaced.fields = {'i': 3}
    assert replaced._snapshot() == ({'t': 'v'}, {'i': 3})
    del replaced.tags, replaced.fields
    with pytest.raises(AttributeError):
        replaced.tags  # noqa: B018
    with pytest.raises(AttributeError):
        replaced.fields  # noqa: B018


@given(
    timestamp=st.one_of(
        st.floats(min_value=0, max_value=10_000_000_000),
        st.floats(min_value=1_600_000_000, max_value=1_900_000_000),
        st.integers(min_value=0, max_value=9_000_000_000).map(
            lambda ms: ms / 1000
        ),
    ),
    precision=st.sampled_from(['s', 'ms', 'u']),
)
def test_fast_timestamps_match_the_decimal_truncation(
    timestamp: float, precision: str
) -> None:
    assert line_protocol.format_timestamp(timestamp, precision) == (
        line_protocol.exact_timestamp(timestamp, precision)
    )


def test_unique_times_move_collisions_only() -> None:
    last: dict[str, list[int]] = {}

    def written(milliseconds: int, tag: str = 'a') -> int:
        # Times the library chose: ints of nanoseconds.
        line = line_protocol.encode(
            'm', {'t': tag}, {'f': 1}, milliseconds * 10**6, 'ms', last
        )
        return int(line.rsplit(' ', 1)[1])

    assert written(10_000) == 10_000
    assert written(10_000) == 10_001  # the same time: moved past the run
    assert written(10_001) == 10_002  # within the run: moved past it
    assert written(10_000, 'b') == 10_000  # another series
    assert written(5_000) == 5_000  # older than the run: a backfill stays
    assert written(10_010) == 10_010  # after the run: a new run
    assert written(10_005) == 10_005  # older than the new run: stays
    # Never more than MAX_STEPS units past its own time.
    assert [written(20_000) for _ in range(5)] == [
        20_000 + step for step in range(line_protocol.MAX_STEPS + 1)
    ]
    with pytest.raises(line_protocol.CollisionError, match="'m,t=a'"):
        written(20_000)
    assert written(20_001) == 20_005  # four steps: still in reach
    assert last['m,t=a'] == [20_000, 20_005]


def test_nanosecond_steps_keep_the_process_digits() -> None:
    last: dict[str, list[int]] = {}
    time = 1_700_000_000_123_456_789

    def written(nanoseconds: int) -> int:
        line = line_protocol.encode('m', {}, {'f': 1}, nanoseconds, 'n', last)
        return int(line.rsplit(' ', 1)[1])

    assert written(time) == time
    assert written(time) == time + 1000  # a microsecond: ...789 kept
    assert written(time + 500) == time + 2000


def test_times_given_in_seconds_are_written_as_given() -> None:
    last: dict[str, list[int]] = {}
    lines = {
        line_protocol.encode('m', {}, {'f': 1}, 10.0, 'ms', last)
        for _ in range(3)
    }
    assert lines == {'m f=1i 10000'}
    assert last == {}


def test_long_distinct_values_leave_no_memory_behind() -> None:
    """The encoder remembers the strings it validated, but not long ones:
    10,000 distinct 10 KB tag values keep no megabytes alive."""
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for index in range(10_000):
            value = f'{index:010d}' * 1000
            line_protocol.encode(
                'long', {'k': value}, {'f': 1}, 10**18, 'n', {}
            )
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    kept = sum(stat.size_diff for stat in after.compare_to(before, 'lineno'))
    assert kept < 2 * 1024 * 1024, kept


def test_errors_show_a_huge_value_cut_short() -> None:
    measurement = Measurement('db', 'm')
    with pytest.raises(ValueError, match='line break') as raised:
        measurement.set_tag('method', 'x' * 60_000 + '\n')
    message = str(raised.value)
    assert len(message) < 200
    assert "xxx\\n' (60004 characters) contains a line break" in message
