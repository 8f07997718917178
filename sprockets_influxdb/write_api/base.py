"""What every write API module gives the writer, and what it reads."""

from __future__ import annotations

import abc
import json
import typing
from collections.abc import Mapping

from sprockets_influxdb._logging import shorten

if typing.TYPE_CHECKING:
    from sprockets_influxdb.config import Settings

__all__ = [
    'PATHS',
    'Answer',
    'Rejection',
    'WriteAPI',
    'json_object',
    'split_path',
    'text_message',
]

#: The write API each known path names, longest first.
PATHS: tuple[tuple[str, str], ...] = (
    ('/api/v3/write_lp', 'v3'),
    ('/api/v2/write', 'v2'),
    ('/write', 'v1'),
)


def split_path(path: str) -> tuple[str, str | None]:
    """Split a URL path into a prefix and the write API its end names.

    :returns: the path without the write endpoint, and ``'v1'``,
        ``'v2'`` or ``'v3'`` when it ended with one (else ``None``)
    """
    path = path.rstrip('/')
    for suffix, name in PATHS:
        if path.endswith(suffix):
            return path[: -len(suffix)], name
    return path, None


class Answer:
    """A server's answer: the status, headers and a bounded body prefix.

    :param status: the HTTP status
    :param headers: the response headers (case-insensitive mapping)
    :param reason: the reason phrase
    :param body: the body as sent, at most the bytes the writer reads
    :param complete: whether *body* is the whole body
    """

    __slots__ = ('body', 'complete', 'headers', 'reason', 'status')

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        reason: str,
        body: bytes,
        complete: bool,
    ) -> None:
        self.status = status
        self.headers = headers
        self.reason = reason
        self.body = body
        self.complete = complete

    @property
    def text(self) -> str:
        """The body as text, undecodable bytes replaced."""
        return self.body.decode('utf-8', 'replace')


class Rejection:
    """What a 400 says about the lines of the body it answers.

    :param message: the server's message
    :param stored: whether the server stored the lines it did not refuse
    :param count: how many lines it says it refused, when it says so
    :param named: the lines it named, by index, with its reason for each
    :param through: the lines before this index are all accounted for:
        refused when named, else stored
    :param own: whether the answer was to exactly these lines (rather
        than to a batch they are the part of that the server refused)
    """

    __slots__ = ('count', 'message', 'named', 'own', 'stored', 'through')

    def __init__(
        self,
        message: str,
        stored: bool,
        count: int | None,
        named: dict[int, str] | None = None,
        through: int = 0,
        own: bool = True,
    ) -> None:
        self.message = message
        self.stored = stored
        self.count = count
        self.named = named or {}
        self.through = through
        self.own = own

    def inherited(self) -> Rejection:
        """What this says about the part of the lines that holds them all."""
        return Rejection(self.message, self.stored, self.count, own=False)

    def refused(self, size: int) -> int:
        """How many of *size* lines this says were refused, at least one."""
        if self.count is None:
            return 1 if self.stored else size
        return min(max(self.count, 1), size)


class WriteAPI(abc.ABC):
    """One server write API: what the writer needs to know of it."""

    #: The name of the API, as the ``api`` setting gives it.
    name = ''
    #: The path of its write endpoint, after the server's URL.
    path = ''
    #: What names the target of a write in logs: database or bucket.
    target = 'database'
    #: The statuses whose answer says which lines were refused.
    rejections: frozenset[int] = frozenset({400})
    #: The library's precisions this API takes.
    precisions: tuple[str, ...] = ('n', 'u', 'ms', 's')

    @abc.abstractmethod
    def params(
        self, settings: Settings, database: str, precision: str
    ) -> dict[str, str]:
        """The query parameters of a write to *database*.

        :param precision: the library's precision (``n``, ``u``, ``ms``
            or ``s``)
        """

    def headers(self, settings: Settings) -> dict[str, str]:
        """The authorization headers of every write (none by default)."""
        return {}

    def where(self, settings: Settings, database: str) -> str:
        """Where a write to *database* goes, for log lines (no secret)."""
        return f'{self.target} {database!r}'

    @abc.abstractmethod
    def message(self, answer: Answer) -> tuple[str, bool]:
        """The error an answer gives, and whether it was read whole."""

    @abc.abstractmethod
    def rejection(
        self, answer: Answer, message: str, whole: bool, lines: list[str]
    ) -> Rejection:
        """What a 400 says about *lines*, the lines of the body sent."""


def json_object(answer: Answer) -> dict[str, object] | None:
    """An answer's body as a JSON object, when it is one and was read whole."""
    if not answer.complete:
        return None
    try:
        payload = json.loads(answer.text)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def text_message(answer: Answer) -> tuple[str, bool]:
    """An answer's body as its message (shortened), else its reason.

    :returns: the message and whether the body was read whole
    """
    return shorten(answer.text.strip(), 500) or answer.reason, answer.complete
