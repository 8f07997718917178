"""What gets installed: a compiled wheel, or a pure one that says so.

Installed from source on a machine without a C compiler, the package
used to build a wheel tagged for the platform, install it quietly and run
the pure-Python encoder with no word anywhere.  Now the wheel is tagged
``py3-none-any``, the build says why in a banner, and the library warns
once at start and says which encoder it uses in the ``install()`` log line
and in ``stats()``.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.helpers import ROOT, clean_environment, run_script

SOURCES = ('setup.py', 'pyproject.toml', 'README.md', 'sprockets_influxdb')
BANNER = 'the compiled line protocol encoder could not be built'


def build_wheel(
    directory: pathlib.Path, **variables: str
) -> tuple[subprocess.CompletedProcess[str], list[pathlib.Path]]:
    """Build a wheel of a copy of the sources, as pip does from an sdist."""
    source = directory / 'source'
    source.mkdir()
    for name in SOURCES:
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            shutil.copytree(
                path,
                source / name,
                ignore=shutil.ignore_patterns('*.so', '__pycache__'),
            )
        else:
            shutil.copy(path, source / name)
    output = directory / 'wheels'
    result = subprocess.run(
        [
            sys.executable,
            '-m',
            'pip',
            'wheel',
            '-v',
            '--no-deps',
            '--no-build-isolation',
            '--disable-pip-version-check',
            '-w',
            str(output),
            str(source),
        ],
        env=clean_environment(**variables),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    wheels = sorted(output.glob('*.whl')) if output.exists() else []
    return result, wheels


def extensions(wheel: pathlib.Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return [
            name
            for name in archive.namelist()
            if name.startswith('sprockets_influxdb/_speedups')
            and name.endswith(('.so', '.pyd'))
        ]


@pytest.fixture(scope='module')
def pure_wheel(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], list[pathlib.Path]]:
    # CC=false: a compiler that fails, as a missing one does.
    return build_wheel(tmp_path_factory.mktemp('pure'), CC='false')


def test_with_a_compiler_the_wheel_holds_the_extension(
    tmp_path: pathlib.Path,
) -> None:
    result, wheels = build_wheel(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = wheels
    tag = f'cp{sys.version_info[0]}{sys.version_info[1]}'
    assert f'-{tag}-{tag}-' in wheel.name
    assert len(extensions(wheel)) == 1
    assert BANNER not in result.stdout + result.stderr


def test_without_a_compiler_the_wheel_is_pure_and_says_so(
    pure_wheel: tuple[subprocess.CompletedProcess[str], list[pathlib.Path]],
) -> None:
    result, wheels = pure_wheel
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = wheels
    assert wheel.name.endswith('-py3-none-any.whl')
    assert extensions(wheel) == []
    assert BANNER in result.stdout + result.stderr
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [
            name for name in archive.namelist() if name.endswith('/WHEEL')
        ]
        text = archive.read(metadata).decode()
    assert 'Root-Is-Purelib: true' in text
    assert 'Tag: py3-none-any' in text


def test_a_required_compiled_build_fails_without_a_compiler(
    tmp_path: pathlib.Path,
) -> None:
    result, wheels = build_wheel(
        tmp_path, CC='false', SPROCKETS_INFLUXDB_REQUIRE_COMPILED='1'
    )
    assert result.returncode != 0
    assert wheels == []


SAYS = """
    import logging
    import sys
    # Only the package on sys.path: not the repository's editable install.
    sys.meta_path[:] = [
        finder for finder in sys.meta_path
        if 'editable' not in getattr(finder, '__module__', '')
    ]
    import sprockets_influxdb as influxdb
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    print('from', influxdb.__file__, file=sys.stderr)
    influxdb.install(url='http://127.0.0.1:9/write')
    other = influxdb.Client('http://127.0.0.1:9/write')
    print(influxdb.stats().encoder, other.stats().encoder)
    other.shutdown(0).result()
    influxdb.shutdown(0).result()
"""


def test_a_pure_installation_warns_once_and_says_which_encoder(
    pure_wheel: tuple[subprocess.CompletedProcess[str], list[pathlib.Path]],
    tmp_path: pathlib.Path,
) -> None:
    _, (wheel,) = pure_wheel
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path)
    # The unpacked wheel comes first, before the repository.
    result = run_script(SAYS, env={'PYTHONPATH': str(tmp_path)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f'from {tmp_path}' in result.stderr
    assert result.stdout.split() == ['python', 'python']
    warnings = [
        line
        for line in result.stderr.splitlines()
        if line.startswith('WARNING') and 'encoder' in line
    ]
    assert len(warnings) == 1, result.stderr
    assert 'compiled line protocol encoder' in warnings[0]
    assert 'is missing' in warnings[0]
    installed = [
        line for line in result.stderr.splitlines() if 'installed' in line
    ]
    assert len(installed) == 1
    assert installed[0].endswith('python encoder'), installed

    # Chosen on purpose: no warning.
    result = run_script(
        SAYS,
        env={
            'PYTHONPATH': str(tmp_path),
            'SPROCKETS_INFLUXDB_PURE_PYTHON': '1',
        },
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['python', 'python']
    assert 'is missing' not in result.stderr


def test_a_compiled_installation_says_so_without_a_warning() -> None:
    result = run_script(SAYS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['compiled', 'compiled']
    assert 'is missing' not in result.stderr
    assert 'compiled encoder' in result.stderr


@pytest.mark.parametrize(
    ('platform', 'expected'),
    [
        ('linux', {'manylinux_x86_64', 'manylinux_aarch64'}),
        ('macos', {'macosx_x86_64', 'macosx_arm64'}),
        ('windows', {'win_amd64'}),
    ],
)
def test_cibuildwheel_builds_every_python_for_each_platform(
    platform: str, expected: set[str]
) -> None:
    result = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), 'cibuildwheel'),
            '--print-build-identifiers',
            '--platform',
            platform,
        ],
        cwd=ROOT,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    identifiers = set(result.stdout.split())
    for version in ('cp39', 'cp310', 'cp311', 'cp312', 'cp313'):
        for suffix in expected:
            assert f'{version}-{suffix}' in identifiers
    assert not any(identifier.startswith('pp') for identifier in identifiers)
