"""Sphinx configuration for the sprockets-influxdb documentation."""

from __future__ import annotations

from sprockets_influxdb import _version

project = 'sprockets-influxdb'
author = 'sprockets-influxdb developers'
copyright = author
release = _version.__version__
version = '.'.join(str(part) for part in _version.version_info[:2])

extensions = ['sphinx.ext.autodoc', 'sphinx.ext.viewcode']

root_doc = 'index'
exclude_patterns = ['_build']
html_theme = 'alabaster'
html_theme_options = {
    'description': 'Batched, reliable InfluxDB writes for Python services',
    'fixed_sidebar': True,
    'page_width': '1100px',
}

autodoc_member_order = 'bysource'
autodoc_typehints = 'description'
autodoc_typehints_description_target = 'documented'

# Every reference to this package's own names is checked.  Names from the
# standard library and third-party packages cannot be resolved without
# intersphinx (the documentation is built offline), so only those are
# ignored.
nitpicky = True
_BUILTINS = (
    'None|bool|int|float|str|bytes|dict|list|tuple|set|object|type'
    '|repr|ValueError|TypeError|Exception|BaseException'
)
_OTHER_PACKAGES = (
    'tornado|httpx|anyio|trio|werkzeug|flask|gunicorn'
    '|asyncio|collections|concurrent|contextlib|dataclasses|datetime|enum'
    '|logging|multiprocessing|os|re|socket|ssl|sys|threading|time|typing'
    '|wsgiref'
)
nitpick_ignore_regex = [
    (r'py:(class|exc|obj|data|func)', rf'({_BUILTINS})'),
    (r'py:.*', rf'({_OTHER_PACKAGES})(\..*)?'),
    # Werkzeug's routing Map, as the WSGI middleware's annotations name it.
    (r'py:class', r'Map'),
]
