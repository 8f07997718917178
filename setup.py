"""Build the optional compiled fast path of the line protocol encoder.

Everything else is declared in ``pyproject.toml``.  When no C compiler is
available the extension is skipped (``optional=True``) and the package works
the same in pure Python, only slower at encoding.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            'sprockets_influxdb._speedups',
            sources=['sprockets_influxdb/_speedups.c'],
            optional=True,
        )
    ]
)
