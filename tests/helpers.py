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
