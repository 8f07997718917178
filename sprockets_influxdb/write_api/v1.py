"""The InfluxDB 1.x write API: ``POST /write?db=&rp=&precision=``.

Basic authentication with the user name and password, or
``Authorization: Token`` when a token is set.  InfluxDB 2.x and 3 answer it
too, and so does VictoriaMetrics.

A 400 from InfluxDB 1.x says, in ``{"error": "..."}``:

* ``partial write:`` first when it stored the lines it did not refuse;
* then either one ``unable to parse '<line>': <reason>`` per line it could
  not parse, in the order of the body, one a line; or the first reason its
  storage engine refused points for (a field type conflict, too many
  values for a tag) and ``dropped=N``.

Its ``X-Influxdb-Error`` header holds the same message cut at 1 KiB: the
body is read instead.
"""

from __future__ import annotations

import base64
import json
import re
import typing
from collections import deque

from sprockets_influxdb.write_api.base import (
    Answer,
    Rejection,
    WriteAPI,
    text_message,
)

if typing.TYPE_CHECKING:
    from sprockets_influxdb.config import Settings

__all__ = ['API', 'PARTIAL', 'authorization', 'named_lines', 'read_rejection']

#: What begins the message of a 400 that stored the lines it did not
#: refuse.
PARTIAL = 'partial write: '
_UNPARSABLE = "unable to parse '"
_DROPPED_RE = re.compile(r'\s*dropped=(\d+)\s*$')
_JSON_ERROR_RE = re.compile(r'\s*\{\s*"error"\s*:\s*"')


class API(WriteAPI):
    """InfluxDB 1.x ``/write``."""

    name = 'v1'
    path = '/write'
    precisions = ('n', 'u', 'ms', 's', 'm', 'h')

    def params(
        self, settings: Settings, database: str, precision: str
    ) -> dict[str, str]:
        """``db``, ``precision`` (``n``, ``u``, ``ms``, ``s``) and ``rp``."""
        params = {'db': database, 'precision': precision}
        if settings.retention_policy:
            params['rp'] = settings.retention_policy
        return params

    def headers(self, settings: Settings) -> dict[str, str]:
        """A token, else basic authentication with user and password."""
        return authorization(settings)

    def message(self, answer: Answer) -> tuple[str, bool]:
        """The message of ``{"error": ...}``, even when cut short."""
        text = answer.text
        start = _JSON_ERROR_RE.match(text)
        if start is not None:
            decoded = _json_string(text[start.end() :])
            if decoded is not None:
                return decoded
        header = answer.headers.get('x-influxdb-error')
        if header:
            return str(header), False
        return text_message(answer)

    def rejection(
        self, answer: Answer, message: str, whole: bool, lines: list[str]
    ) -> Rejection:
        """The lines named, or the count of ``dropped=N``."""
        return read_rejection(message, whole, lines)


def authorization(settings: Settings) -> dict[str, str]:
    """``Token`` with a token, else basic authentication, else nothing."""
    if settings.token is not None:
        return {'Authorization': f'Token {settings.token}'}
    if settings.username is None and settings.password is None:
        return {}
    pair = f'{settings.username or ""}:{settings.password or ""}'
    token = base64.b64encode(pair.encode('utf-8')).decode('ascii')
    return {'Authorization': f'Basic {token}'}


def read_rejection(message: str, whole: bool, lines: list[str]) -> Rejection:
    """What an InfluxDB 1.x message says about *lines*, the lines sent.

    :param whole: whether *message* was read whole
    """
    stored = message.startswith(PARTIAL)
    text = message[len(PARTIAL) :] if stored else message
    if text.startswith(_UNPARSABLE):
        entries = text.count('\n' + _UNPARSABLE) + 1
        named, through = named_lines(text, whole, lines)
        return Rejection(message, stored, entries, named, through)
    dropped = _DROPPED_RE.search(text)
    count = int(dropped.group(1)) if stored and dropped else None
    return Rejection(message, stored, count)


def _json_string(text: str) -> tuple[str, bool] | None:
    """Decode a JSON string from just after its opening quote.

    :returns: the string and whether it was whole (else the beginning of
        a string that was cut short), or ``None`` when it is not JSON
    """
    decoder = json.JSONDecoder()
    try:
        value, _ = decoder.raw_decode('"' + text)
    except ValueError:
        # Cut short, perhaps in the middle of an escape sequence.
        for cut in range(min(len(text), 6) + 1):
            try:
                value, _ = decoder.raw_decode(f'"{text[: len(text) - cut]}"')
            except ValueError:
                continue
            return (value, False) if isinstance(value, str) else None
        return None
    return (value, True) if isinstance(value, str) else None


def named_lines(
    text: str, whole: bool, lines: list[str]
) -> tuple[dict[int, str], int]:
    """Find the lines a list of parse errors names, with their reasons.

    InfluxDB lists them in the order of the body, one a line, each quoted
    whole; a line may itself hold quotes and line feeds, so each one is
    recognised as one of *lines*.

    :returns: the reason for each line named, by index, and the index
        before which every line is accounted for (0 when the list cannot
        be trusted: a line named is not one of *lines*)
    """
    # The indexes of each line not named yet, in order: a line named is
    # after the one named before it.
    where: dict[str, deque[int]] = {}
    for index, line in enumerate(lines):
        where.setdefault(line, deque()).append(index)
    longest = max(map(len, lines), default=0)
    named: dict[int, str] = {}
    last = -1
    at = 0
    while text.startswith(_UNPARSABLE, at):
        start = at + len(_UNPARSABLE)
        found = -1
        quote = text.find("': ", start)
        while 0 <= quote <= start + longest:
            indexes = where.get(text[start:quote])
            while indexes and indexes[0] <= last:
                indexes.popleft()
            if indexes:
                found = indexes.popleft()
                break
            quote = text.find("': ", quote + 1)
        if found < 0:
            break
        stop = text.find('\n', quote + 3)
        if stop < 0:
            stop = len(text)
        named[found] = _DROPPED_RE.sub('', text[quote + 3 : stop])
        last = found
        at = stop + 1
    if at >= len(text) and whole:
        return named, len(lines)
    if whole:
        return {}, 0
    return named, last + 1
