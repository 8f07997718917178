"""The package version, kept in one place for the build and the runtime."""

from __future__ import annotations

version_info = (3, 0, 0)
__version__ = '.'.join(str(part) for part in version_info)
