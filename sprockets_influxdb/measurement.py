"""The :class:`Measurement`: one point, validated as it is built."""

from __future__ import annotations

import contextlib
import datetime
import math
import sys
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from sprockets_influxdb import clock, line_protocol
from sprockets_influxdb.line_protocol import FieldValue

__all__ = ['Measurement']

# The encoder's caches of validated strings: a hit means "already checked".
_measurement_names = line_protocol._measurement_cache
_field_keys = line_protocol._field_key_cache
_tag_pairs = line_protocol._tag_pair_cache
_FLOAT_MAX = sys.float_info.max
_FLOAT_MIN = -_FLOAT_MAX
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_PRECISIONS = line_protocol.PRECISIONS
_now_ns = clock.now_ns

# The base tags every new Measurement starts with: those of the default
# client, set when it is configured (``install()`` or first use).
_default_tags: dict[str, str] | None = None


def _load_compiled() -> Any:
    """The compiled extension when its Measurement base is to be used."""
    if not (line_protocol.COMPILED and clock.COMPILED):
        return None
    from sprockets_influxdb import _speedups

    return _speedups if hasattr(_speedups, 'MeasurementBase') else None


_compiled = _load_compiled()
if TYPE_CHECKING:
    _Base = object
else:
    # The compiled base does what __init__, set_tag, set_field and
    # set_timestamp below do for the common case, and calls them for the
    # rest (see _speedups.c).
    _Base = object if _compiled is None else _compiled.MeasurementBase


def set_default_tags(tags: Mapping[str, str] | None) -> None:
    """Set the tags new measurements start with (``None``: read them lazily).

    :param tags: the default client's base tags
    """
    global _default_tags
    _default_tags = None if tags is None else dict(tags)
    if _compiled is not None:
        _compiled.configure_default_tags(_default_tags)


def _initial_tags() -> dict[str, str]:
    if _default_tags is None:
        from sprockets_influxdb.config import Settings

        set_default_tags(Settings.resolve().base_tags)
    assert _default_tags is not None
    return dict(_default_tags)


class Measurement(_Base):
    """One point that will become a row in an InfluxDB database.

    Build it, then hand it to :func:`sprockets_influxdb.add_measurement`
    (or :meth:`.Client.add_measurement`):

    .. code-block:: python

        import sprockets_influxdb as influxdb

        measurement = influxdb.Measurement('example', 'measurement-name')
        measurement.set_tag('foo', 'bar')
        measurement.set_field('baz', 1.05)
        influxdb.add_measurement(measurement)

    Every setter validates its input and raises :class:`ValueError` for
    what line protocol cannot carry, so that a bad value is reported where
    it enters rather than when the batch is written.

    :param database: the database the point is written to
    :param name: the measurement name
    :raises ValueError: for an empty database or an invalid name

    .. attribute:: database
       :type: str

       The database the point is written to.

    .. attribute:: name
       :type: str

       The measurement name.

    .. attribute:: tags
       :type: dict[str, str]

       Tag keys and values; starts as a copy of the installed base tags.

    .. attribute:: fields
       :type: dict[str, bool | int | float | str]

       Field keys and values.

    The time of the point is taken at construction from the library's
    clock (:mod:`sprockets_influxdb.clock`), in nanoseconds: no other
    point the library times, in this process or in another one on the
    host, gets the same time (see :ref:`timestamps`).  A time given with
    :meth:`set_timestamp` is written as given.
    """

    def __init__(self, database: str, name: str) -> None:
        if not (type(database) is str or isinstance(database, str)) or (
            not database
        ):
            raise ValueError(
                f'database must be a non-empty str, not {database!r}'
            )
        if name not in _measurement_names:
            line_protocol.escape_measurement(name)
        self.database = database
        self.name = name
        tags = _default_tags
        self.tags: dict[str, str] = (
            tags.copy() if tags is not None else _initial_tags()
        )
        self.fields: dict[str, FieldValue] = {}
        # An int: nanoseconds the library chose, kept apart from other
        # points; a float: seconds the user gave, written as given.
        moment = _now_ns()
        self._time = moment
        if _compiled is None:
            self._lent = moment

    # The time, pure Python only (the compiled base has its own, see
    # _speedups.c): while nothing has read the clock's time the point was
    # given (_lent), replacing it gives it back, so that points built with
    # times of their own do not use up the clock's (one per microsecond).
    _lent = 0

    @property
    def _time(self) -> int | float:
        self._lent = 0  # read: anything may hold it from now on
        return self._moment

    @_time.setter
    def _time(self, value: int | float) -> None:
        lent = self._lent
        if lent:
            self._lent = 0
            # Not when it is given the very time it was lent (a time given
            # as unique that rounds to it): it keeps it.
            if value != lent:
                clock.give_back(lent)
        self._moment = value

    def __getstate__(self) -> dict[str, Any]:
        # A copy (copy, pickle) holds the time too: the loan ends here,
        # and the copy has none.
        self._lent = 0
        state = dict(self.__dict__)
        del state['_lent']
        return state

    def _snapshot(self) -> tuple[dict[str, str], dict[str, FieldValue]]:
        """The tags and fields for a queued entry: copies."""
        return dict(self.tags), dict(self.fields)

    def __repr__(self) -> str:
        return (
            f'<Measurement {self.database!r} {self.name!r} '
            f'tags={self.tags!r} fields={self.fields!r} '
            f'timestamp={self.timestamp!r}>'
        )

    @property
    def timestamp(self) -> float:
        """The time of the point, in seconds since the epoch.

        Assigning a number is the same as calling :meth:`set_timestamp`.
        """
        value = self._time
        return value / 1e9 if type(value) is int else value

    @timestamp.setter
    def timestamp(self, value: float | datetime.datetime) -> None:
        self.set_timestamp(value)

    @property
    def time_ns(self) -> int:
        """The time of the point, in nanoseconds since the epoch.

        Exact for a time the library chose; for a time given in seconds,
        the decimal digits of the number given, truncated.
        """
        value = self._time
        if type(value) is int:
            return value
        return int(line_protocol.exact_timestamp(value, 'n'))

    @contextlib.contextmanager
    def duration(self, name: str) -> Iterator[None]:
        """Time a block of code into a field, in seconds.

        The monotonic clock is used, and the field is set even when the block
        raises.

        .. code-block:: python

            with measurement.duration('query_time'):
                run_query()

        :param name: the field to set
        :raises ValueError: for an invalid field key (before the block runs)
        """
        line_protocol.escape_field_key(name)
        start = time.monotonic()
        try:
            yield
        finally:
            self.fields[name] = time.monotonic() - start

    def marshall(self, precision: str = 'ms') -> str:
        """Return the point as one line of line protocol.

        :param precision: the timestamp precision (``ms`` by default, as
            2.x wrote it; the library writes ``ns`` by default)
        :returns: the line, without a trailing newline
        :raises ValueError: when the measurement has no fields, or holds a
            value that was put into :attr:`tags` or :attr:`fields` directly
            and cannot be represented
        """
        return line_protocol.encode(
            self.name,
            self.tags,
            self.fields,
            self._time,
            _PRECISIONS.get(precision)
            or line_protocol.normalize_precision(precision),
        )

    def set_field(self, name: str, value: FieldValue) -> None:
        """Set a field.

        ``bool`` is written as ``true``/``false``, ``int`` as an integer
        (64-bit range), ``float`` exactly, ``str`` as a string (even when it
        is made of digits).

        :param name: the field key
        :param value: the value
        :raises ValueError: for an invalid key, another type, NaN, an
            infinity or an integer out of range
        """
        kind = type(value)
        if not (
            (kind is float and _FLOAT_MIN <= value <= _FLOAT_MAX)  # type: ignore[operator]
            or (kind is int and _INT64_MIN <= value <= _INT64_MAX)  # type: ignore[operator]
            or (kind is str and value.isascii())  # type: ignore[union-attr]
            or kind is bool
        ):
            line_protocol.format_field_value(name, value)
        if name not in _field_keys:
            line_protocol.escape_field_key(name)
        self.fields[name] = value

    def set_tag(self, name: str, value: object) -> None:
        """Set a tag, replacing any previous value.

        The value is converted with :func:`str`.  An empty value or ``None``
        removes the tag (InfluxDB refuses empty tag values).

        :param name: the tag key
        :param value: the value
        :raises ValueError: when the key or value cannot be represented
        """
        if value is None:
            self.tags.pop(name, None)
            return
        text = value if type(value) is str else str(value)
        if (name, text) in _tag_pairs:
            self.tags[name] = text
            return
        line_protocol.escape_tag_key(name)
        if not text:
            self.tags.pop(name, None)
            return
        line_protocol.tag_fragment(name, text)
        self.tags[name] = text

    def set_tags(self, tags: Mapping[str, object]) -> None:
        """Set several tags, as :meth:`set_tag` does for each.

        All of them are validated before any is set.

        :param tags: tag keys and values
        :raises ValueError: when a key or value cannot be represented
        """
        checked: list[tuple[str, str | None]] = []
        for name, value in tags.items():
            line_protocol.escape_tag_key(name)
            text = None if value is None else str(value)
            if text:
                line_protocol.escape_tag_value(text)
            checked.append((name, text or None))
        for name, text in checked:
            if text is None:
                self.tags.pop(name, None)
            else:
                self.tags[name] = text

    def set_timestamp(
        self, value: float | datetime.datetime, *, unique: bool = False
    ) -> None:
        """Set the time of the point.

        The time is written as given, truncated to the precision: another
        point of the same series at the same time replaces it in InfluxDB.
        With *unique*, it is kept apart from the other points of its series
        as a time the library chose is: rounded up to this process's
        digits below the microsecond (see :ref:`timestamps`) and, when the
        series already has a point there, moved a step later (a
        microsecond at ``ns``, a unit at coarser precisions), a few steps
        at most.

        The time the library's clock gave the point is handed back to the
        clock when nothing has read it yet, so that building points with
        times of their own does not use up the clock's (see
        :ref:`timestamps`).

        :param value: seconds since the epoch, or a :class:`datetime.datetime`
            (a naive one is local time, as :meth:`datetime.datetime.timestamp`
            reads it)
        :param unique: keep it apart from the other points of its series
        :raises ValueError: for NaN, an infinity or another type
        """
        if type(value) is float and value - value == 0.0 and not unique:
            # The common case first: finite seconds (x - x is NaN for NaN
            # and the infinities), written as given.
            self._time = value
            return
        if isinstance(value, datetime.datetime):
            seconds = value.timestamp()
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(
                'timestamp must be a float (seconds since the epoch) or a '
                f'datetime, not {type(value).__name__}'
            )
        elif not math.isfinite(value):
            raise ValueError(f'timestamp {value!r} is not finite')
        else:
            seconds = float(value)
        if unique:
            nanoseconds = int(line_protocol.exact_timestamp(seconds, 'n'))
            self._time = clock.align(nanoseconds, up=True)
        else:
            self._time = seconds


if _compiled is not None:
    # The methods above serve what the compiled ones leave to Python; the
    # compiled ones take their place (and their documentation).
    _compiled.configure_measurement(
        _tag_pairs,
        Measurement.__init__,
        Measurement.set_tag,
        Measurement.set_field,
        Measurement.set_timestamp,
    )
    for _name in (
        '__init__',
        'set_tag',
        'set_field',
        'set_timestamp',
        '_time',
        '_lent',
        '__getstate__',
    ):
        delattr(Measurement, _name)
    del _name
