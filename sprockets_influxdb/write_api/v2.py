"""The InfluxDB 2.x write API: ``POST /api/v2/write?org=&bucket=&precision=``.

``Authorization: Token <token>``, as ``influxdb-client`` sends it (or
basic authentication without a token, for VictoriaMetrics with
``-httpAuth.*``).  The bucket is the measurement's database unless the
``bucket`` setting names one for every measurement.  InfluxDB 3 and
VictoriaMetrics answer it too.

Its errors are ``{"code": "...", "message": "..."}``.  A 400 whose
message begins ``partial write error (N written): `` stored N lines; the
rest of the message names the first line it could not parse
(``unable to parse '<line>': <reason>``), not necessarily all of them.
"""

from __future__ import annotations

import re
import typing

from sprockets_influxdb.write_api import v1, v3
from sprockets_influxdb.write_api.base import (
    Answer,
    Rejection,
    WriteAPI,
    json_object,
    text_message,
)

if typing.TYPE_CHECKING:
    from sprockets_influxdb.config import Settings

__all__ = ['API', 'PRECISIONS']

#: The library's precisions, by their names in this API.
PRECISIONS = {'n': 'ns', 'u': 'us', 'ms': 'ms', 's': 's'}

_WRITTEN_RE = re.compile(r'partial write error \((\d+) written\):\s*')


class API(WriteAPI):
    """InfluxDB 2.x ``/api/v2/write``."""

    name = 'v2'
    path = '/api/v2/write'
    target = 'bucket'
    # 422: the storage engine refused points (a field type conflict, a
    # time outside the retention) and stored the others.
    rejections = frozenset({400, 422})

    def params(
        self, settings: Settings, database: str, precision: str
    ) -> dict[str, str]:
        """``org`` (when set), ``bucket`` and ``precision``."""
        params = {}
        if settings.org is not None:
            params['org'] = settings.org
        params['bucket'] = settings.bucket or database
        params['precision'] = PRECISIONS[precision]
        return params

    def headers(self, settings: Settings) -> dict[str, str]:
        """``Token`` authorization, else basic with user and password."""
        return v1.authorization(settings)

    def where(self, settings: Settings, database: str) -> str:
        """The bucket and the organization, for log lines."""
        bucket = settings.bucket or database
        org = f' of organization {settings.org!r}' if settings.org else ''
        return f'bucket {bucket!r}{org}'

    def message(self, answer: Answer) -> tuple[str, bool]:
        """The ``message`` (with its ``code``) of the JSON error."""
        payload = json_object(answer) or {}
        message = payload.get('message')
        if isinstance(message, str):
            code = payload.get('code')
            prefix = f'{code}: ' if isinstance(code, str) and code else ''
            return prefix + message, True
        return text_message(answer)

    def rejection(
        self, answer: Answer, message: str, whole: bool, lines: list[str]
    ) -> Rejection:
        """How many lines were stored, and the lines named if they are all.

        InfluxDB 3 answers this endpoint as it answers its own.
        """
        if (json_object(answer) or {}).get('data') is not None:
            return v3.read_rejection(answer, message, lines)
        message = message.removeprefix('invalid: ')
        if answer.status == 422:
            # "failure writing points to database: partial write: ...
            # dropped=N", as InfluxDB 1.x says it.
            at = message.find(v1.PARTIAL)
            text = message[at:] if at >= 0 else message
            rejection = v1.read_rejection(text, whole, lines)
            rejection.message = message
            return rejection
        written = _WRITTEN_RE.search(message)
        if written is None:
            # The batch was refused whole: nothing stored.
            return Rejection(message, False, None)
        stored = int(written.group(1))
        if not 0 <= stored < len(lines):
            return Rejection(message, True, None)
        count = len(lines) - stored
        rest = message[written.end() :]
        named, _ = v1.named_lines(rest, whole, lines)
        if len(named) == count:
            # Every refused line is named: the others were stored.
            return Rejection(message, True, count, named, len(lines))
        return Rejection(message, True, count)
