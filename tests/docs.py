"""The code examples of the documentation, for the tests that run them."""

from __future__ import annotations

import os
import re
import textwrap
import typing

from tests.helpers import ROOT

_DIRECTIVE = re.compile(r'^(\s*)\.\. code-block:: (\w+)\s*$')
_OPTION = re.compile(r'^:([\w-]+):\s*(.*)$')


class CodeBlock(typing.NamedTuple):
    """One ``code-block`` directive of a page."""

    #: Its language (``python``, ``console``...).
    language: str
    #: Its options (``{'caption': 'app.py'}``).
    options: dict[str, str]
    #: Its text, dedented, ending with one line feed.
    text: str


def all_code_blocks(document: str) -> list[CodeBlock]:
    """Every code block of a page of ``docs/``, in order.

    :param document: the page's file name (``tornado.rst``), or the path of
        a module whose docstrings the documentation renders
        (``sprockets_influxdb/asgi.py``)
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
        body = textwrap.dedent('\n'.join(body)).strip('\n').split('\n')
        options = {}
        while body and (option := _OPTION.match(body[0])):
            options[option.group(1)] = option.group(2)
            del body[0]
        text = '\n'.join(body).strip('\n') + '\n'
        blocks.append(CodeBlock(match.group(2), options, text))
    return blocks


def code_blocks(document: str, language: str = 'python') -> list[str]:
    """The code blocks of one language in a page of ``docs/``, in order.

    :param document: as for :func:`all_code_blocks`
    :param language: the language of the ``code-block`` directive
    """
    return [
        block.text
        for block in all_code_blocks(document)
        if block.language == language
    ]
