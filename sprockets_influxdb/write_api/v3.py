"""The InfluxDB 3 write API: ``POST /api/v3/write_lp?db=&precision=``.

``Authorization: Bearer <token>``.  The database is the measurement's
unless the ``bucket`` setting names one for every measurement.
Precisions are spelled out (``nanosecond`` ...); ``accept_partial=false``
and ``no_sync=true`` are sent only when set, the server's defaults being
the others.

A 400 is ``{"error": "...", "data": ...}``.  With ``accept_partial`` (the
default) the server stored every line but those it lists in ``data``,
each with its ``line_number`` (from 1) and ``error_message``: they are
dropped, the others counted as written, nothing is sent again.  Without
it, ``data`` is the first line it could not parse and nothing was stored.
Other errors have an empty body (401, 403) or a line of text (404).
"""

from __future__ import annotations

import typing

from sprockets_influxdb.write_api.base import (
    Answer,
    Rejection,
    WriteAPI,
    json_object,
    text_message,
)

if typing.TYPE_CHECKING:
    from sprockets_influxdb.config import Settings

__all__ = ['API', 'PRECISIONS', 'read_rejection']

_PARTIAL = '{"error":"partial write of line protocol'

#: The library's precisions, by their names in this API.
PRECISIONS = {
    'n': 'nanosecond',
    'u': 'microsecond',
    'ms': 'millisecond',
    's': 'second',
}


class API(WriteAPI):
    """InfluxDB 3 ``/api/v3/write_lp``."""

    name = 'v3'
    path = '/api/v3/write_lp'

    def params(
        self, settings: Settings, database: str, precision: str
    ) -> dict[str, str]:
        """``db``, ``precision``, and the options that are not defaults."""
        params = {}
        if settings.org is not None:
            # Not read by InfluxDB 3; sent as influxdb3-python sends it.
            params['org'] = settings.org
        params['db'] = settings.bucket or database
        params['precision'] = PRECISIONS[precision]
        if not settings.accept_partial:
            params['accept_partial'] = 'false'
        if settings.no_sync:
            params['no_sync'] = 'true'
        return params

    def headers(self, settings: Settings) -> dict[str, str]:
        """``Bearer`` authorization, when a token is set."""
        if settings.token is None:
            return {}
        return {'Authorization': f'Bearer {settings.token}'}

    def where(self, settings: Settings, database: str) -> str:
        """The database, for log lines."""
        return f'database {settings.bucket or database!r}'

    def message(self, answer: Answer) -> tuple[str, bool]:
        """The ``error`` of the JSON answer, else its text."""
        payload = json_object(answer)
        if payload is not None and isinstance(payload.get('error'), str):
            return str(payload['error']), True
        return text_message(answer)

    def rejection(
        self, answer: Answer, message: str, whole: bool, lines: list[str]
    ) -> Rejection:
        """The lines listed in ``data``, or nothing stored."""
        return read_rejection(answer, message, lines)


def read_rejection(
    answer: Answer, message: str, lines: list[str]
) -> Rejection:
    """What InfluxDB 3 says in a 400 about *lines*, the lines it was sent.

    Only a partial write (``data`` a list) stored anything.  Each entry's
    ``line_number`` counts the lines sent from 1; its ``original_line`` is
    the server's rendering of the line, not always the text sent, so the
    number alone is trusted.
    """
    payload = json_object(answer)
    data = None if payload is None else payload.get('data')
    if isinstance(data, dict):
        # accept_partial=false: nothing stored; the first line it could
        # not parse is named.
        index = _index(data, lines)
        if index is None:
            return Rejection(message, False, None)
        reason = str(data.get('error_message', message))
        return Rejection(message, False, None, {index: reason})
    if not isinstance(data, list):
        # Not about lines (a bad URL, a name it refuses, a body cut
        # short): nothing was stored.
        stored = answer.text.lstrip().startswith(_PARTIAL)
        return Rejection(message, stored, None)
    named: dict[int, str] = {}
    for entry in data:
        index = _index(entry, lines)
        if index is None or index in named:
            # Not what was sent: find the lines by halving.
            return Rejection(message, True, len(data))
        named[index] = str(entry.get('error_message', message))
    return Rejection(message, True, len(named), named, len(lines))


def _index(entry: object, lines: list[str]) -> int | None:
    """The index in *lines* of a line an entry of ``data`` names."""
    if not isinstance(entry, dict):
        return None
    number = entry.get('line_number')
    if type(number) is not int or not 0 < number <= len(lines):
        return None
    return number - 1
