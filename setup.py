"""Build the compiled fast path of the line protocol encoder.

Everything else is declared in ``pyproject.toml``.

The extension needs a C compiler and the Python headers.  Without them the
package still installs and works the same in pure Python, only slower at
encoding, but never silently as if it were compiled:

* the build says so in a banner (``pip install -v`` shows it), and the
  wheel is tagged ``py3-none-any``, which is what it then is, instead of
  a platform tag that a cache would hand out as if it held the extension;
* at run time, the library warns once that the compiled encoder is
  missing, and :func:`sprockets_influxdb.stats` says which encoder is in
  use.

``SPROCKETS_INFLUXDB_REQUIRE_COMPILED=1`` turns a failed build into an
error, for wheels built to be published (see ``[tool.cibuildwheel]`` in
``pyproject.toml``).
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

REQUIRE = 'SPROCKETS_INFLUXDB_REQUIRE_COMPILED'


class BuildExt(build_ext):
    """Build the extension, or say loudly that the package is pure Python."""

    def run(self) -> None:
        """Build, or go on without the extension."""
        try:
            super().run()
        except Exception as error:  # no compiler at all, say
            self._without(error)

    def build_extension(self, ext: Extension) -> None:
        """Build one extension, or go on without it."""
        try:
            super().build_extension(ext)
        except Exception as error:  # a compiler but no Python.h, say
            self._without(error)

    def _without(self, error: Exception) -> None:
        if os.environ.get(REQUIRE, '') not in ('', '0'):
            raise error
        banner = '*' * 72
        sys.stderr.write(
            f'\n{banner}\n'
            'sprockets-influxdb: the compiled line protocol encoder could '
            f'not be built\n({type(error).__name__}: {error}).\n'
            'This installation is pure Python: encoding costs about 3 times '
            'as much CPU.\nInstall a C compiler and the Python headers '
            '(gcc and python3-dev on Debian),\nthen reinstall with '
            '"pip install --no-cache-dir --force-reinstall".\n'
            'The wheel built now is tagged py3-none-any.\n'
            f'{banner}\n\n'
        )
        self.distribution.ext_modules = []
        wheel = self.distribution.command_obj.get('bdist_wheel')
        if wheel is not None:
            # Read after the build, when the wheel is named and laid out.
            wheel.root_is_pure = True  # type: ignore[attr-defined]


setup(
    ext_modules=[
        Extension(
            'sprockets_influxdb._speedups',
            sources=['sprockets_influxdb/_speedups.c'],
        )
    ],
    cmdclass={'build_ext': BuildExt},
)
