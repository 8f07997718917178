"""The code examples of the documentation, for the tests that run them."""

from __future__ import annotations

import os
import re
import textwrap

from tests.helpers import ROOT

_DIRECTIVE = re.compile(r'^(\s*)\.\. code-block:: (\w+)\s*$')


def code_blocks(document: str, language: str = 'python') -> list[str]:
    """The code blocks of one language in a page of ``docs/``, in order.

    :param document: the page's file name (``tornado.rst``), or the path of
        a module whose docstrings the documentation renders
        (``sprockets_influxdb/asgi.py``)
    :param language: the language of the ``code-block`` directive
    """
    if '/' not in document:
        document = f'docs/{document}'
    with open(os.path.join(ROOT, document), encoding='utf-8') as file:
        lines = file.read().splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        match = _DIRECTIVE.match(lines[index])
        index += 1
        if match is None:
            continue
        indent = len(match.group(1))
        body = []
        while index < len(lines) and (
            not lines[index].strip()
            or len(lines[index]) - len(lines[index].lstrip()) > indent
        ):
            body.append(lines[index])
            index += 1
        if match.group(2) == language:
            blocks.append(textwrap.dedent('\n'.join(body)).strip('\n') + '\n')
    return blocks
