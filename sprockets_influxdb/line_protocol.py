"""InfluxDB line protocol: validation, escaping and encoding.

This module is the hot path of the library.  Every name, tag key, tag value
and field key is validated and escaped once and then remembered in a small
cache, because real applications repeat the same few hundred strings
millions of times.

The rules follow what InfluxDB 1.x parses, checked against a real server by
the property tests:

* measurement names escape comma and space;
* tag keys, tag values and field keys escape comma, equals sign and space;
* string field values escape backslash and double quote and may contain
  newlines;
* what the protocol cannot represent is refused with :class:`ValueError`:
  a line feed, carriage return or other control character outside a
  string field value, a backslash
  at the end of a name, key or tag value, or a backslash right before a
  character the server would read as an escape (comma, equals sign, space,
  double quote), text that is not valid Unicode, a measurement name that
  starts with ``#`` (the server would read a comment) and ``time`` as a tag
  or field key (the server drops such points).
"""

from __future__ import annotations

import decimal
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, Union

from sprockets_influxdb._logging import shorten

__all__ = [
    'COMPILED',
    'ENCODER',
    'MAX_STEPS',
    'MISSING',
    'NANOSECONDS',
    'PRECISIONS',
    'CollisionError',
    'FieldValue',
    'encode',
    'encode_python',
    'escape_field_key',
    'escape_measurement',
    'escape_tag_key',
    'escape_tag_value',
    'exact_timestamp',
    'fast_encode',
    'fast_slice',
    'format_field_value',
    'format_timestamp',
    'normalize_precision',
    'report_missing',
    'tag_fragment',
]

LOGGER = logging.getLogger('sprockets_influxdb')

FieldValue = Union[bool, int, float, str]
"""The Python types a field value can have."""

#: Accepted precision names, mapped to the value sent in the ``precision``
#: query argument.  ``us`` and ``ns`` are accepted for convenience, but the
#: server reads ``precision=us`` as nanoseconds, so ``u`` and ``n`` are sent.
PRECISIONS: Mapping[str, str] = {
    'n': 'n',
    'ns': 'n',
    'u': 'u',
    'us': 'u',
    'ms': 'ms',
    's': 's',
    'm': 'm',
    'h': 'h',
}

_DECIMAL_DIGITS = {'n': 9, 'u': 6, 'ms': 3, 's': 0}
#: Nanoseconds per unit of each precision (as :func:`normalize_precision`
#: returns it): times the library chose are integers of nanoseconds.
NANOSECONDS: Mapping[str, int] = {
    'n': 1,
    'u': 1000,
    'ms': 1_000_000,
    's': 1_000_000_000,
    'm': 60_000_000_000,
    'h': 3_600_000_000_000,
}

#: How many steps past its own time a point the library timed may be moved
#: to keep it apart from the points of its series already written: a step
#: is one microsecond at ``ns`` (keeping the process's digits below it) and
#: one unit at the other precisions.
MAX_STEPS = 4


class CollisionError(ValueError):
    """A point cannot be kept apart from the points of its series.

    Its series already has points at its time and at each of the
    :data:`MAX_STEPS` steps after it: the series is recorded faster than
    one point per step.  Moving it further would move it away from its real
    time; writing it would replace a point.
    """


# Precisions whose scaled timestamps stay exact in a float, up to a limit
# (microseconds until 2106, milliseconds and seconds until 2255):
# multiplying is then safe.
_FAST_SCALES = {'u': 1_000_000, 'ms': 1000, 's': 1}
_FAST_LIMITS = {'u': 4_294_967_296.0, 'ms': 9_000_000_000.0, 's': 9e9}
_FINITE_MAX = sys.float_info.max
_FINITE_MIN = -_FINITE_MAX
_DIVISORS = {'m': 60, 'h': 3600}

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

# Characters a backslash must never stand in front of: the server would read
# the pair as an escape sequence and change the value.
_ESCAPABLE = frozenset(',= "')

_CONTROL = re.compile('[\x00-\x1f\x7f]')

# Bounded caches of validated, escaped strings.  A cache is simply emptied
# when it grows past its bound: the common case is a small working set.
# Bounded in size too: longer strings (and line heads) are not remembered,
# so that 8192 entries stay a few megabytes whatever the values.
_CACHE_LIMIT = 8192
_CACHED_LENGTH = 256
_CACHED_HEAD = 1024
_measurement_cache: dict[str, str] = {}
_tag_key_cache: dict[str, str] = {}
_tag_value_cache: dict[str, str] = {}
_field_key_cache: dict[str, str] = {}
_tag_pair_cache: dict[tuple[str, object], str] = {}
_prefix_cache: dict[tuple[object, ...], str] = {}
_SERIES_LIMIT = 100_000


def _shown(value: object) -> str:
    """A value as an error message shows it: its repr, cut short."""
    return shorten(repr(value), 80)


def _check_text(value: object, what: str) -> str:
    """Validate a name, key or tag value and return it.

    :raises ValueError: when line protocol cannot carry the value
    """
    if not isinstance(value, str):
        raise ValueError(f'{what} must be a str, not {type(value).__name__}')
    if not value:
        raise ValueError(f'{what} must not be empty')
    if '\n' in value or '\r' in value:
        raise ValueError(
            f'{what} {_shown(value)} contains a line break, which line '
            'protocol cannot carry'
        )
    if _CONTROL.search(value):
        raise ValueError(
            f'{what} {_shown(value)} contains a control character, which the '
            'server reads as white space or cannot query'
        )
    if '\\' in value:
        if value.endswith('\\'):
            raise ValueError(
                f'{what} {_shown(value)} ends with a backslash, which line '
                'protocol cannot carry'
            )
        for index, char in enumerate(value[:-1]):
            if char == '\\' and value[index + 1] in _ESCAPABLE:
                raise ValueError(
                    f'{what} {_shown(value)} has a backslash before '
                    f'{value[index + 1]!r}, which the server would read '
                    'as an escape sequence'
                )
    if not value.isascii():
        _check_unicode(value, what)
    # A str subclass (a str enum) goes on as its text: formatting it would
    # give something else (``Name.CPU`` for ``Name.CPU = 'cpu'``).
    return value if type(value) is str else str.__str__(value)


def _check_unicode(value: str, what: str) -> None:
    try:
        value.encode('utf-8')
    except UnicodeEncodeError as error:
        raise ValueError(
            f'{what} {_shown(value)} is not valid Unicode'
        ) from error


def _remember(cache: dict[str, str], raw: str, escaped: str) -> str:
    if len(raw) > _CACHED_LENGTH:
        return escaped
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[raw] = escaped
    return escaped


def escape_measurement(name: str) -> str:
    """Validate and escape a measurement name.

    :param name: the measurement name
    :returns: the name as it appears in a line
    :raises ValueError: when the name cannot be represented
    """
    escaped = _measurement_cache.get(name)
    if escaped is not None:
        return escaped
    text = _check_text(name, 'measurement name')
    if text.startswith('#'):
        raise ValueError(
            f'measurement name {_shown(name)} starts with "#", which the '
            'server reads as a comment'
        )
    escaped = text
    if ',' in escaped or ' ' in escaped:
        escaped = escaped.replace(',', '\\,').replace(' ', '\\ ')
    return _remember(_measurement_cache, name, escaped)


def _escape_key_or_tag(value: str) -> str:
    if ',' in value or '=' in value or ' ' in value:
        return (
            value.replace(',', '\\,').replace('=', '\\=').replace(' ', '\\ ')
        )
    return value


def escape_tag_key(key: str) -> str:
    """Validate and escape a tag key.

    :param key: the tag key
    :returns: the key as it appears in a line
    :raises ValueError: when the key cannot be represented
    """
    escaped = _tag_key_cache.get(key)
    if escaped is not None:
        return escaped
    text = _check_text(key, 'tag key')
    if text == 'time':
        raise ValueError('tag key "time" is refused by InfluxDB')
    return _remember(_tag_key_cache, key, _escape_key_or_tag(text))


def escape_tag_value(value: str) -> str:
    """Validate and escape a (non-empty) tag value.

    :param value: the tag value, already converted to :class:`str`
    :returns: the value as it appears in a line
    :raises ValueError: when the value cannot be represented
    """
    escaped = _tag_value_cache.get(value)
    if escaped is not None:
        return escaped
    text = _check_text(value, 'tag value')
    return _remember(_tag_value_cache, value, _escape_key_or_tag(text))


def escape_field_key(key: str) -> str:
    """Validate and escape a field key.

    :param key: the field key
    :returns: the key as it appears in a line
    :raises ValueError: when the key cannot be represented
    """
    escaped = _field_key_cache.get(key)
    if escaped is not None:
        return escaped
    text = _check_text(key, 'field key')
    if text == 'time':
        raise ValueError('field key "time" is refused by InfluxDB')
    return _remember(_field_key_cache, key, _escape_key_or_tag(text))


def format_field_value(key: str, value: object) -> str:
    """Validate a field value and return its line protocol form.

    :param key: the field key, used in error messages
    :param value: a :class:`bool`, :class:`int`, :class:`float` or
        :class:`str`
    :returns: ``true``/``false``, ``<n>i``, the shortest round-trip float or
        a quoted string
    :raises ValueError: for any other type, an integer outside the int64
        range, NaN, an infinity, or text that is not valid Unicode
    """
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise ValueError(
                f'field {key!r} is {value!r}, which InfluxDB cannot store'
            )
        return repr(value)
    if kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
            raise ValueError(
                f'field {key!r} is {value!r}, outside the 64-bit integer range'
            )
        return f'{value}i'
    if kind is str:
        text: str = value  # type: ignore[assignment]
        if not text.isascii():
            _check_unicode(text, f'field {_shown(key)} value')
        if '\\' in text or '"' in text:
            text = text.replace('\\', '\\\\').replace('"', '\\"')
        return f'"{text}"'
    if kind is bool:
        return 'true' if value else 'false'
    # Subclasses (IntEnum, numpy.float64, str enums) are written as their
    # base type; bool is tested first because it is a subclass of int.
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int):
        return format_field_value(key, int(value))
    if isinstance(value, float):
        return format_field_value(key, float(value))
    if isinstance(value, str):
        # str() of a (str, Enum) member is its name: take the text itself.
        return format_field_value(key, str.__str__(value))
    raise ValueError(
        f'field {key!r} must be a bool, int, float or str, '
        f'not {type(value).__name__}'
    )


def normalize_precision(precision: str) -> str:
    """Return the precision value to send for a user-facing name.

    :param precision: one of ``n``/``ns``, ``u``/``us``, ``ms``, ``s``,
        ``m``, ``h``
    :returns: the value for the ``precision`` query argument
    :raises ValueError: for an unknown precision
    """
    try:
        return PRECISIONS[precision]
    except (KeyError, TypeError):
        raise ValueError(
            f'precision {precision!r} is not one of '
            f'{", ".join(sorted(PRECISIONS))}'
        ) from None


def format_timestamp(timestamp: float, precision: str = 'ms') -> str:
    """Return an epoch timestamp in seconds as an integer at a precision.

    The value is truncated, not rounded, and the decimal digits the user
    wrote (the shortest representation of the float) are used, so that
    ``1.001`` gives ``1001`` milliseconds rather than the ``1000`` that
    truncating ``1.001 * 1000`` (``1000.9999999999999``) would give.

    :param timestamp: seconds since the epoch
    :param precision: a value returned by :func:`normalize_precision`
    :returns: the integer timestamp as text
    """
    scale = _FAST_SCALES.get(precision)
    if scale is not None and 0 <= timestamp < _FAST_LIMITS[precision]:
        # Multiply, then correct the last unit where binary arithmetic
        # landed on the wrong side of the decimal value.
        number = int(timestamp * scale)
        if (number + 1) / scale <= timestamp:
            number += 1
        elif number / scale > timestamp:
            number -= 1
        return str(number)
    return exact_timestamp(timestamp, precision)


def exact_timestamp(timestamp: float, precision: str = 'ms') -> str:
    """Do what :func:`format_timestamp` does, with decimal text only.

    Slower; used for the cases the fast path does not cover (nanoseconds,
    negative and huge timestamps) and to check the fast path in the tests.

    :param timestamp: seconds since the epoch
    :param precision: a value returned by :func:`normalize_precision`
    :returns: the integer timestamp as text
    :raises ValueError: for NaN, an infinity or something else than a
        number
    """
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)):
        raise ValueError(
            f'timestamp must be a number, not {type(timestamp).__name__}'
        )
    if not math.isfinite(timestamp):
        raise ValueError(f'timestamp {timestamp!r} is not finite')
    digits = _DECIMAL_DIGITS.get(precision)
    if digits is None:
        return str(int(timestamp / _DIVISORS[precision]))
    text = repr(timestamp)
    if 'e' in text or 'n' in text:
        exact = decimal.Decimal(text).scaleb(digits)
        return str(int(exact.to_integral_value(decimal.ROUND_DOWN)))
    whole, _, fraction = text.partition('.')
    if digits == 0:
        number = whole
    else:
        number = whole + (fraction + '000000000')[:digits]
    return str(int(number))


def tag_fragment(key: str, value: object) -> str:
    """Validate one tag and return it as ``,key=value`` (``''`` if empty).

    :param key: the tag key
    :param value: the value, converted with :class:`str` (the text itself
        for a :class:`str` subclass such as a string enum)
    :returns: the text that follows the measurement name in a line
    :raises ValueError: when the key or value cannot be represented
    """
    if value is None or value == '':
        return ''
    # A str subclass (a str enum) is not passed through str(), which gives
    # its name: escape_tag_value() writes its text.
    text = value if isinstance(value, str) else str(value)
    fragment = (
        f',{_tag_key_cache.get(key) or escape_tag_key(key)}='
        f'{_tag_value_cache.get(text) or escape_tag_value(text)}'
    )
    if type(value) is str and len(fragment) <= _CACHED_LENGTH:
        if len(_tag_pair_cache) >= _CACHE_LIMIT:
            _tag_pair_cache.clear()
        _tag_pair_cache[key, value] = fragment
    return fragment


def encode_python(
    name: str,
    tags: Mapping[str, object],
    fields: Mapping[str, object],
    timestamp: float | int,
    precision: str = 'ms',
    last: dict[str, list[int]] | None = None,
) -> str:
    """Do what :func:`encode` does, in Python only.

    This is the reference the compiled fast path is tested against, and
    what encodes every point the fast path leaves alone: it validates,
    escapes and fills the caches the fast path reads.  Same parameters and
    result as :func:`encode`.
    """
    if not fields:
        raise ValueError(f'measurement {name!r} has no fields')
    if tags:
        # The same few tag sets come back all the time: remember the start
        # of the line for each, keyed by the name, then the tag keys and
        # the tag values in insertion order (the compiled fast path builds
        # the same key).
        try:
            prefix_key: tuple[object, ...] | None = (
                name,
                *tags,
                *tags.values(),
            )
            head = _prefix_cache.get(prefix_key)  # type: ignore[arg-type]
        except TypeError:  # an unhashable value put in ``tags`` directly
            prefix_key = head = None
        if head is None:
            pairs = _tag_pair_cache
            if prefix_key is None:
                fragments = [
                    tag_fragment(key, tags[key]) for key in sorted(tags)
                ]
            else:
                fragments = [
                    pairs.get((key, tags[key])) or tag_fragment(key, tags[key])
                    for key in sorted(tags)
                ]
            head = (
                _measurement_cache.get(name) or escape_measurement(name)
            ) + ''.join(fragments)
            # Only all-text tag sets are kept: 1, 1.0 and True are equal
            # keys but different tag values.
            if (
                prefix_key is not None
                and len(head) <= _CACHED_HEAD
                and all(type(value) is str for value in tags.values())
            ):
                if len(_prefix_cache) >= _CACHE_LIMIT:
                    _prefix_cache.clear()
                _prefix_cache[prefix_key] = head
    else:
        head = _measurement_cache.get(name) or escape_measurement(name)
    keys = _field_key_cache
    texts: list[str] = []
    append = texts.append
    for key, value in fields.items():
        kind = type(value)
        # ``x - x`` is 0.0 for every finite float, NaN otherwise.
        if kind is float and value - value == 0.0:  # type: ignore[operator]
            text = repr(value)
        elif kind is int and _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
            text = f'{value}i'
        elif (
            kind is str
            and value.isascii()  # type: ignore[attr-defined]
            and '"' not in value  # type: ignore[operator]
            and '\\' not in value  # type: ignore[operator]
        ):
            text = f'"{value}"'
        else:
            text = format_field_value(key, value)
        try:
            append(f'{keys[key]}={text}')
        except KeyError:
            append(f'{escape_field_key(key)}={text}')
    values = ','.join(texts)
    if type(timestamp) is int:
        number = _scale_nanoseconds(timestamp, precision)
        if last is not None:
            number = _keep_apart(last, head, number, precision)
    else:
        scale = _FAST_SCALES.get(precision)
        if scale is not None and 0 <= timestamp < _FAST_LIMITS[precision]:
            number = int(timestamp * scale)
            if (number + 1) / scale <= timestamp:
                number += 1
            elif number / scale > timestamp:
                number -= 1
        else:
            number = int(exact_timestamp(timestamp, precision))
    return f'{head} {values} {number}'


def _scale_nanoseconds(nanoseconds: int, precision: str) -> int:
    """Nanoseconds at a precision, truncated toward zero."""
    divisor = NANOSECONDS[precision]
    if nanoseconds >= 0:
        return nanoseconds // divisor
    return -(-nanoseconds // divisor)


def _keep_apart(
    last: dict[str, list[int]], head: str, number: int, precision: str
) -> int:
    """The time to write a point of the series *head* at.

    InfluxDB keeps one point per series and time: a second point at a time
    already written would replace the first.  Each series remembers its
    last run of times written, a step apart (``[first, end]``): a point
    within it moves one step past its end, at most :data:`MAX_STEPS` steps
    from its own time; an older one (a backfill, a slow request) stays put.
    Anything else than a list of two ints under *head* is not a run: it is
    replaced with a new one.

    :raises CollisionError: when the point would move further
    """
    run = last.get(head)
    if (
        type(run) is not list
        or len(run) != 2
        or type(run[0]) is not int
        or type(run[1]) is not int
    ):
        # None, or not a run the encoders wrote: a new run (the compiled
        # fast path does the same).
        if run is None and len(last) >= _SERIES_LIMIT:
            last.clear()
        last[head] = [number, number]
    elif number > run[1]:
        run[0] = run[1] = number
    elif number >= run[0]:
        step = 1000 if precision == 'n' else 1
        moved = run[1] + step
        if moved - number > MAX_STEPS * step:
            raise CollisionError(
                f'series {_shown(head)} already has points at every time up '
                f'to {MAX_STEPS} steps after this one: it is recorded faster '
                'than one point per step'
            )
        number = run[1] = moved
    return number


def encode(
    name: str,
    tags: Mapping[str, object],
    fields: Mapping[str, object],
    timestamp: float | int,
    precision: str = 'ms',
    last: dict[str, list[int]] | None = None,
) -> str:
    """Encode one point as a line (without the trailing newline).

    Tags are written sorted by key; tags with an empty value (or ``None``)
    are left out.

    A timestamp is an :class:`int` of nanoseconds for a time the library
    chose, or a :class:`float` of seconds for a time the user gave (written
    as given).  With *last*, each series (measurement and tags) keeps there
    its last run of times written, and a point the library timed whose time
    falls within that run is moved one step after its end (one microsecond
    at ``n``, one unit at the other precisions), at most
    :data:`MAX_STEPS` steps, so that it does not replace a point already
    written; a point older than the run (a backfill, a slow request) keeps
    its time.

    The common point (cached names and tags; bool, int, float and plain
    ASCII text fields; an int timestamp at ``n``, ``u``, ``ms`` or ``s``, a
    float one at ``s``, ``ms`` or ``u``) is encoded by a compiled fast path
    when the package was built with it; see :data:`COMPILED`.

    :param name: the measurement name
    :param tags: tag keys and values
    :param fields: at least one field
    :param timestamp: nanoseconds (:class:`int`) or seconds
        (:class:`float`) since the epoch
    :param precision: a value returned by :func:`normalize_precision`
    :param last: the last run of times written of each series (a list
        ``[first, last]``), updated
    :returns: the line
    :raises CollisionError: when a point cannot be kept apart
    :raises ValueError: when something cannot be represented, naming it
    """
    if fast_encode is not None:
        line = fast_encode(name, tags, fields, timestamp, precision, last)
        if line is not None:
            return line
    return encode_python(name, tags, fields, timestamp, precision, last)


def _load_fast_path() -> tuple[Any, Any, str | None]:
    """The compiled fast paths, if built and wanted.

    :returns: the fast paths of one point and of a slice, and why they
        are missing though expected (``None`` when they are there or
        were not expected)
    """
    if os.environ.get('SPROCKETS_INFLUXDB_PURE_PYTHON', '') not in ('', '0'):
        return None, None, None
    try:
        from sprockets_influxdb import _speedups
    except ImportError as error:
        # Built for CPython only: elsewhere pure Python is expected.
        if sys.implementation.name != 'cpython':
            return None, None, None
        return None, None, f'{type(error).__name__}: {error}'
    _speedups.configure(
        _prefix_cache, _measurement_cache, _field_key_cache, _SERIES_LIMIT
    )
    return _speedups.encode, _speedups.encode_slice, None


_fast_paths = _load_fast_path()

#: The compiled fast path of :func:`encode`, or ``None``: called with the
#: same six arguments, it returns the line, or ``None`` for a point it
#: leaves to :func:`encode_python`.
fast_encode: Callable[..., str | None] | None = _fast_paths[0]

#: The compiled fast path for buffered entries, or ``None``:
#: ``fast_slice(values, start, stop, precision, base_tags, outputs)``
#: encodes the entries held flat in the list *values* (six values each:
#: sequence, database, name, tags, fields, timestamp) from index *start*
#: on, appending each sequence and line to the lists
#: ``outputs[database] = [sequences, lines, last]``, and returns the index
#: of the first entry it leaves to :func:`encode` (*stop* when none).
fast_slice: Callable[..., int] | None = _fast_paths[1]

#: Whether the compiled fast path of :func:`encode` is in use: the package
#: was built with a C compiler and ``SPROCKETS_INFLUXDB_PURE_PYTHON`` is
#: not set.
COMPILED = fast_encode is not None

#: The encoder in use, ``'compiled'`` or ``'python'``, as
#: :func:`~sprockets_influxdb.stats` and the ``install()`` log line say.
ENCODER = 'compiled' if COMPILED else 'python'

#: Why the compiled encoder is missing on CPython, where it was expected
#: (the package was installed without a C compiler, say), or ``None``.
MISSING: str | None = _fast_paths[2]

_missing_reported = False


def report_missing() -> None:
    """Warn, once per process, that the compiled encoder is missing.

    Only when it was expected: on CPython, unless
    ``SPROCKETS_INFLUXDB_PURE_PYTHON`` asks for pure Python.
    """
    global _missing_reported
    if MISSING is None or _missing_reported:
        return
    _missing_reported = True
    LOGGER.warning(
        'The compiled line protocol encoder of sprockets-influxdb is '
        'missing (%s): measurements are encoded in pure Python, which '
        'costs about 3 times as much CPU.  Install a wheel built for '
        'this platform, or reinstall with a C compiler and the Python '
        'headers (pip install --no-cache-dir --force-reinstall --no-deps '
        'sprockets-influxdb); set '
        'SPROCKETS_INFLUXDB_PURE_PYTHON=1 to choose pure Python and '
        'silence this warning',
        MISSING,
    )
