"""Small helpers shared by the test modules."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import typing

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

T = typing.TypeVar('T')


def wait_for(
    predicate: typing.Callable[[], T],
    timeout: float = 15.0,
    message: str = 'condition',
) -> T:
    """Poll *predicate* until it returns something truthy; fail on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f'timed out after {timeout} s waiting for {message}')
        time.sleep(0.02)


def clean_environment(**variables: str) -> dict[str, str]:
    """This environment without the library's variables, with the
    repository on ``PYTHONPATH`` and *variables* added: what a child
    process of a test starts with."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(('INFLUXDB_', 'SERVICE', 'ENVIRONMENT'))
    }
    environ['PYTHONPATH'] = ROOT
    environ.update(variables)
    return environ


def run_script(
    source: str,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    args: typing.Sequence[str] = (),
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run Python source in a fresh interpreter, as a user's script runs."""
    return subprocess.run(
        [sys.executable, '-c', textwrap.dedent(source), *args],
        cwd=cwd,
        env=clean_environment(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


#: Runs a test twice: ``pure`` is ``'0'`` (the compiled extension) or
#: ``'1'`` (pure Python), for :func:`run_in_mode`.
both_modes = pytest.mark.parametrize(
    'pure', ['0', '1'], ids=['compiled', 'python']
)


def run_in_mode(
    source: str,
    pure: str,
    env: dict[str, str] | None = None,
    args: typing.Sequence[str] = (),
    timeout: float = 60.0,
) -> typing.Any:
    """Run *source* compiled (*pure* ``'0'``) or in pure Python (``'1'``).

    It must succeed and print a JSON object whose ``compiled`` tells the
    mode it ran in; the object is returned without it.
    """
    import json

    result = run_script(
        source,
        {'SPROCKETS_INFLUXDB_PURE_PYTHON': pure, **(env or {})},
        timeout=timeout,
        args=args,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer.pop('compiled') is (pure == '0')
    return answer


class ModesResult(typing.NamedTuple):
    """What :func:`run_in_both_modes` found."""

    #: What the pure Python process printed (its ``compiled`` removed).
    answers: dict[str, typing.Any]
    #: What it printed on stderr (the compiled process printed the same).
    stderr: str
    #: The rows it stored, without ``time`` and ``duration`` (the compiled
    #: process stored the same).
    rows: list[dict[str, object]]


def run_in_both_modes(influxdb: typing.Any, source: str) -> ModesResult:
    """Run *source* with the compiled extension and in pure Python mode.

    Each process gets the server's URL and its own measurement name as
    arguments and prints a JSON object with ``compiled`` (whether it ran
    compiled) and ``added`` (the measurements its client took).  Both must
    succeed and print the same, on stdout and stderr, and store the same
    rows (times and durations aside) in the database ``modes``, as many as
    they added.
    """
    import json

    influxdb.create_database('modes')
    answers = {}
    errors = {}
    for pure, name in (('0', 'compiled'), ('1', 'python')):
        result = run_script(
            source,
            {'SPROCKETS_INFLUXDB_PURE_PYTHON': pure, 'INFLUXDB_TAGS': ''},
            args=(influxdb.url, name),
        )
        assert result.returncode == 0, result.stderr
        answers[name] = json.loads(result.stdout)
        errors[name] = result.stderr
    assert answers['compiled'].pop('compiled') is True
    assert answers['python'].pop('compiled') is False
    assert answers['compiled'] == answers['python']
    assert errors['compiled'] == errors['python']

    def rows(name: str) -> list[dict[str, object]]:
        found: list[dict[str, object]] = influxdb.rows('modes', name)
        for row in found:
            del row['time'], row['duration']
        return found

    stored = rows('compiled')
    assert stored == rows('python')
    assert len(stored) == answers['python']['added']
    return ModesResult(answers['python'], errors['python'], stored)


def request_summary(
    row: typing.Mapping[str, typing.Any], handler: bool = False
) -> tuple[object, ...]:
    """(method, endpoint, status_code, content_length, error) of a request's
    point (its tags and fields in one mapping, as a row has them), and the
    last part of the handler's name when asked."""
    summary: tuple[object, ...] = (
        row['method'],
        row['endpoint'],
        row['status_code'],
        row['content_length'],
        row.get('error'),
    )
    if handler:
        name = row.get('handler')
        summary += (str(name).rsplit('.', 1)[-1] if name else None,)
    return summary
