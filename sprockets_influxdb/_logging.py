"""Logging that what an application's clients send cannot flood."""

from __future__ import annotations

import time

__all__ = ['Throttle', 'shorten']

#: Seconds between two lines of one throttled kind.
INTERVAL = 5.0


def shorten(text: str, limit: int = 200) -> str:
    """*text*, cut short when longer than *limit*, saying how long it was."""
    if len(text) <= limit:
        return text
    return f'{text[: limit - 20]}...{text[-10:]} ({len(text)} characters)'


class Throttle:
    """Allows one log line every few seconds and counts those left out."""

    __slots__ = ('_left_out', '_logged_at')

    def __init__(self) -> None:
        self._logged_at = -INTERVAL
        self._left_out = 0

    def allow(self) -> str | None:
        """Tell whether to log now.

        :returns: ``None`` when a line was logged less than 5 s ago (this
            one is counted as left out), else a suffix for the line that
            says how many were left out since the last one (``''`` for
            none)
        """
        now = time.monotonic()
        if now - self._logged_at < INTERVAL:
            self._left_out += 1
            return None
        left_out, self._left_out = self._left_out, 0
        self._logged_at = now
        return f' ({left_out} more since the last report)' if left_out else ''
