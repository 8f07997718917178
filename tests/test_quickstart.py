"""``docs/quickstart.rst``, run from top to bottom as its reader runs it.

Every code block of the page is taken in order and handled by the step
:data:`PLAN` gives it; a block the plan does not know, or a plan entry
without its block, fails :func:`test_every_block_has_a_step`.  What is
run, and what stands in for the reader's machine:

* the install commands are run for real, in a temporary directory holding
  a copy of the repository's files as ``sprockets-influxdb/`` (the
  reader's clone): a new virtual environment, ``pip install`` from the
  clone (its dependencies come from the package index pip is configured
  with), then ``pip wheel`` and ``pip install`` of that wheel, after
  ``pip uninstall -y sprockets-influxdb`` so that the wheel is what the
  applications then import (checked);
* ``http://localhost:8086`` is replaced by the address of a throwaway
  influxd started with authentication on, and the applications' ports
  (8001, 8002, 8003) by free ports, in the commands and in the saved
  programs; nothing else is changed;
* the ``export`` lines, ``. venv/bin/activate``, ``command &``,
  ``kill %1 %2 %3`` and ``wait`` are the shell's own: the test keeps the
  environment, the background processes and their order as bash does
  (``kill`` sends ``SIGTERM``), and waits for an application's port to
  accept connections before the ``curl`` that follows it (a reader types
  slower than it starts); every other command runs with ``bash -c`` in
  that environment and must exit 0 and print what the page shows (floats
  and the time of the percentile query compared by shape);
* the Grafana dashboard cannot be imported here (no Grafana): its
  variable and panel queries are run as Grafana would run them (see
  ``tests/test_dashboards.py``) with the data source the page describes,
  and must answer with the quickstart's requests;
* the commands that create a bucket or a database and a token on
  InfluxDB 2.x and 3 are NOT run: no such server or command line tool can
  be installed here.  The variables the page gives for them are: the
  FastAPI application is started again with them, against a recording
  server standing for InfluxDB 2.x, then 3, and the request it sends must
  be the one that API expects (path, query, authorization, body).
"""

from __future__ import annotations

import csv
import io
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import typing

import httpx
import pytest

from tests import test_dashboards
from tests.docs import CodeBlock, all_code_blocks
from tests.helpers import ROOT
from tests.servers import (
    FaultServer,
    InfluxServer,
    free_port,
    listeners,
    listens,
)

PAGE = 'quickstart.rst'
INFLUXDB = 'http://localhost:8086'
INFLUXDB3 = 'http://localhost:8181'
APP_PORTS = ('8001', '8002', '8003')


class Step(typing.NamedTuple):
    """What the test does with one block of the page."""

    #: The block's language.
    language: str
    #: Text the block contains (so that a step follows its block).
    contains: str
    #: ``install``, ``shell``, ``save``, ``v2``, ``v3`` or ``not run``.
    kind: str
    #: Why a block is not run.
    reason: str = ''


NO_SERVER = (
    'needs an InfluxDB {} server and its command line tool, which cannot '
    'be installed here'
)

PLAN = [
    Step('console', "pip install './sprockets-influxdb[", 'install'),
    Step('console', 'pip wheel --no-deps --wheel-dir dist', 'install'),
    Step('console', 'CREATE USER admin', 'shell'),
    Step('console', 'export INFLUXDB_USER=writer', 'shell'),
    Step('python', 'class Hello(influxdb.InfluxDBMixin', 'save'),
    Step('console', 'python app_tornado.py &', 'shell'),
    Step('python', 'app.add_middleware(InfluxDBMiddleware', 'save'),
    Step('console', 'uvicorn app_fastapi:app', 'shell'),
    Step('python', 'app.wsgi_app = InfluxDBMiddleware', 'save'),
    Step('console', 'gunicorn --workers 2', 'shell'),
    Step('console', 'kill %1 %2 %3', 'shell'),
    Step('console', 'SELECT count("duration")', 'shell'),
    Step('console', 'SELECT percentile("duration", 95)', 'shell'),
    Step('console', 'influx bucket create', 'not run', NO_SERVER.format(2)),
    Step('console', 'INFLUXDB_ORG=acme', 'v2'),
    Step(
        'console', 'influxdb3 create database', 'not run', NO_SERVER.format(3)
    ),
    Step('console', 'INFLUXDB_API=v3', 'v3'),
]


class Command(typing.NamedTuple):
    """One ``$ `` command of a console block and the output shown."""

    line: str
    output: list[str]


def commands(block: CodeBlock) -> list[Command]:
    """The commands of a console block: ``$ `` lines, continued while
    a quote is open or a line ends with ``\\``, then their output."""
    result: list[Command] = []
    lines = block.text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.startswith('$ '):
            assert result, f'output before any command: {line!r}'
            result[-1].output.append(line)
            continue
        command = line[2:]
        while command.endswith('\\') or not complete(command):
            command += '\n' + lines[index]
            index += 1
        result.append(Command(command, []))
    return result


def complete(command: str) -> bool:
    try:
        shlex.split(command)
    except ValueError:  # No closing quotation
        return False
    return True


def blocks() -> list[CodeBlock]:
    return all_code_blocks(PAGE)


def test_every_block_has_a_step() -> None:
    found = blocks()
    assert len(found) == len(PLAN), (
        f'{PAGE} has {len(found)} code blocks and tests/test_quickstart.py '
        f'has {len(PLAN)} steps: give the new block a step'
    )
    for block, step in zip(found, PLAN):
        assert block.language == step.language, (block.text, step)
        assert step.contains in block.text, (block.text, step.contains)
        if step.kind == 'save':
            assert block.options.get('caption', '').endswith('.py'), block
        else:
            assert commands(block), block.text


def test_the_blocks_not_run_create_what_the_settings_use() -> None:
    """What the 2.x and 3 commands create is what the applications and
    the variables given for these servers name."""
    texts = {step.contains: block.text for block, step in zip(blocks(), PLAN)}
    databases = set(re.findall(r"database='(\w+)'", ''.join(texts.values())))
    assert len(databases) == 1, databases
    v2 = texts['influx bucket create']
    orgs = set(re.findall(r'--org (\S+)', v2))
    assert {f'INFLUXDB_ORG={org}' for org in orgs} == set(
        re.findall(r'INFLUXDB_ORG=\S+', texts['INFLUXDB_ORG=acme'])
    )
    assert re.findall(r'--name (\S+)', v2) == list(databases), v2
    v3 = texts['influxdb3 create database']
    assert v3.splitlines()[0].split()[-1] in databases, v3


# -- the shell -----------------------------------------------------------


class Shell:
    """The reader's terminal: its variables, directory and jobs."""

    def __init__(self, cwd: str, substitutions: dict[str, str]) -> None:
        self.cwd = cwd
        self.substitutions = substitutions
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(
                ('INFLUXDB', 'SERVICE', 'ENVIRONMENT', 'PYTHON', 'VIRTUAL')
            )
        }
        self.jobs: list[subprocess.Popen[bytes]] = []
        self.transcript: list[str] = []

    def substitute(self, text: str) -> str:
        """Every substitution at once (a new port may hold an old one)."""
        pattern = '|'.join(
            rf'\b{old}\b' if old.isdigit() else re.escape(old)
            for old in self.substitutions
        )
        return re.sub(
            pattern, lambda match: self.substitutions[match.group()], text
        )

    def run_block(self, block: CodeBlock) -> None:
        for command in commands(block):
            self.run(command)

    def run(self, command: Command) -> None:
        line = self.substitute(command.line)
        self.transcript.append(f'$ {line}')
        words = shlex.split(line)
        if words[0] == 'export':
            for word in words[1:]:
                name, _, value = word.partition('=')
                self.env[name] = value
        elif words == ['.', 'venv/bin/activate']:
            venv = os.path.join(self.cwd, 'venv')
            self.env['VIRTUAL_ENV'] = venv
            self.env['PATH'] = f'{venv}/bin:{self.env["PATH"]}'
        elif line.endswith('&'):
            self.start(line[:-1].strip())
        elif words[0] == 'kill':
            for word in words[1:]:
                self.jobs[int(word.lstrip('%')) - 1].send_signal(
                    signal.SIGTERM
                )
        elif words == ['wait']:
            for job in self.jobs:
                job.wait(timeout=30)
            self.transcript.append(self.logs())
            self.jobs.clear()
        else:
            self.wait_for_ports(line)
            result = subprocess.run(
                ['bash', '-c', line],
                cwd=self.cwd,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            self.transcript.append(result.stdout + result.stderr)
            assert result.returncode == 0, '\n'.join(self.transcript)
            check_output(line, result.stdout, command.output)

    def start(self, line: str) -> None:
        log = open(  # noqa: SIM115 - closed when the job ends
            os.path.join(self.cwd, f'job-{len(self.jobs) + 1}.log'), 'wb'
        )
        self.jobs.append(
            subprocess.Popen(
                ['bash', '-c', f'exec {line}'],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        log.close()

    def wait_for_ports(self, line: str) -> None:
        for port in re.findall(r'//localhost:(\d+)', line):
            if port in self.substitutions.values():
                wait_for_port(int(port), self.jobs, self.logs)

    def logs(self) -> str:
        texts = []
        for number in range(1, len(self.jobs) + 1):
            path = os.path.join(self.cwd, f'job-{number}.log')
            with open(path, encoding='utf-8', errors='replace') as file:
                texts.append(file.read())
        return '\n'.join(texts)

    def stop(self) -> None:
        for job in self.jobs:
            if job.poll() is None:
                job.kill()
                job.wait()


def wait_for_port(
    port: int,
    jobs: list[subprocess.Popen[bytes]],
    logs: typing.Callable[[], str],
    timeout: float = 30.0,
) -> None:
    """Wait until one of the page's background jobs listens on *port*.

    Accepting a connection is not enough: a server another test started
    may have taken the port after :func:`free_port` chose it.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(('127.0.0.1', port), 0.5).close()
        except OSError:
            pass
        else:
            if any(
                job.poll() is None and listens(job.pid, port) for job in jobs
            ):
                return
        if time.monotonic() > deadline:
            taken = (
                ' (another process listens there)' if listeners(port) else ''
            )
            pytest.fail(f'no job listens on {port}{taken}:\n{logs()}')
        time.sleep(0.05)


def check_output(line: str, printed: str, shown: list[str]) -> None:
    """What a command printed is what the page shows."""
    if not shown:
        return
    if 'percentile' in line:
        # The durations and the times of the requests vary.
        rows = list(csv.reader(io.StringIO(printed)))
        expected = list(csv.reader(io.StringIO('\n'.join(shown))))
        assert [row[:2] for row in rows] == [row[:2] for row in expected]
        for row in rows[1:]:
            assert 0 < time.time_ns() - int(row[2]) < 300 * 10**9, row
            assert 0 < float(row[3]) < 5, row
        return
    assert printed.strip().splitlines() == shown, printed


# -- the page, run -------------------------------------------------------


def install(shell: Shell, install_blocks: list[CodeBlock]) -> None:
    """The install blocks, then what they installed is checked."""
    clone = os.path.join(shell.cwd, 'sprockets-influxdb')
    files = (
        subprocess.run(
            ['git', 'ls-files', '-z'],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split('\0')
    )
    for name in filter(None, files):
        if os.path.isfile(os.path.join(ROOT, name)):
            os.makedirs(
                os.path.dirname(os.path.join(clone, name)), exist_ok=True
            )
            shutil.copy2(os.path.join(ROOT, name), os.path.join(clone, name))
    clone_install, wheel_install = install_blocks
    shell.run_block(clone_install)
    # The wheel's install must install something: take the clone's away.
    shell.run(Command('pip uninstall -q -y sprockets-influxdb', []))
    shell.run_block(wheel_install)
    (wheel,) = os.listdir(os.path.join(shell.cwd, 'dist'))
    assert wheel.startswith('sprockets_influxdb-3.'), wheel
    found = subprocess.run(
        [
            'python',
            '-c',
            'import sprockets_influxdb as s, sprockets_influxdb._speedups;'
            'print(s.__version__, s.__file__)',
        ],
        cwd=shell.cwd,
        env=shell.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 0, found.stderr
    version, path = found.stdout.split()
    assert version.startswith('3.'), version
    assert path.startswith(os.path.join(shell.cwd, 'venv', 'lib')), path


@pytest.mark.timeout(300)  # pip, under load, is the slow part
def test_the_quickstart_runs(influxd_path: str, tmp_path: typing.Any) -> None:
    steps = list(zip(blocks(), PLAN))
    assert len(steps) == len(PLAN), 'see test_every_block_has_a_step'
    ports = {port: str(free_port()) for port in APP_PORTS}
    with InfluxServer(executable=influxd_path, auth_enabled=True) as server:
        shell = Shell(str(tmp_path), {INFLUXDB: server.url, **ports})
        try:
            run_page(shell, steps)
        finally:
            shell.stop()
        dashboard_shows_the_data(server.url)
        # The writer's points, read back as the administrator.
        answer = httpx.get(
            f'{server.url}/query',
            params={
                'db': 'example',
                'q': 'SELECT count("duration") FROM quickstart '
                'GROUP BY handler',
            },
            auth=('admin', 'admin-secret'),
        ).json()
    handlers = {
        series['tags']['handler']: series['values'][0][1]
        for series in answer['results'][0]['series']
    }
    assert handlers == {
        '__main__.Hello': 1,
        'app_fastapi.hello': 1,
        'app_flask.hello': 1,
    }, handlers


def dashboard_shows_the_data(url: str) -> None:
    """The dashboard the page has the reader import, with the data source
    it describes (database ``example``, user ``reader``) and every
    variable at "All": each query answers, with the quickstart's data."""

    def series(query: str) -> list[dict[str, typing.Any]]:
        answer = httpx.get(
            f'{url}/query',
            params={'db': 'example', 'q': query},
            auth=('reader', 'reader-secret'),
        ).json()
        (result,) = answer['results']
        assert 'error' not in result, (query, result)
        return typing.cast(
            list[dict[str, typing.Any]], result.get('series', [])
        )

    variables = {
        'measurement': 'quickstart',
        'hostname': '.*',
        'environment': '.*',
        'endpoint': '.*',
    }
    dashboard = test_dashboards.load()
    found = {}
    for variable in dashboard['templating']['list']:
        if variable['type'] == 'query':
            query = test_dashboards.substitute(variable['query'], variables)
            values = [
                row[-1] for one in series(query) for row in one['values']
            ]
            found[variable['name']] = set(values)
    assert 'quickstart' in found['measurement'], found
    assert found['endpoint'] == {
        r'/hello/(\w+)',
        '/hello/{name}',
        '/hello/<name>',
    }, found
    for panel in dashboard['panels']:
        for target in panel['targets']:
            query = test_dashboards.substitute(target['query'], variables)
            if "'5xx'" not in query:  # no request failed
                assert series(query), (panel['title'], query)


def run_page(shell: Shell, steps: list[tuple[CodeBlock, Step]]) -> None:
    install_blocks = [block for block, step in steps if step.kind == 'install']
    install(shell, install_blocks)
    for block, step in steps:
        if step.kind == 'save':
            path = os.path.join(shell.cwd, block.options['caption'])
            with open(path, 'w', encoding='utf-8') as file:
                file.write(shell.substitute(block.text))
        elif step.kind == 'shell':
            shell.run_block(block)
        elif step.kind in ('v2', 'v3'):
            check_other_server(shell, block, step.kind)
        else:
            assert step.kind in ('install', 'not run'), step


def check_other_server(shell: Shell, block: CodeBlock, api: str) -> None:
    """The FastAPI application, with the variables of *block*, sends
    the request of that write API to a recording server."""
    fastapi = next(
        command
        for block_ in blocks()
        if block_.language == 'console'
        for command in commands(block_)
        if command.line.startswith('uvicorn ')
    )
    with FaultServer() as recorder:
        other = Shell(
            shell.cwd,
            {
                **shell.substitutions,
                INFLUXDB: recorder.url,
                INFLUXDB3: recorder.url,
            },
        )
        other.env = dict(shell.env)
        other.run_block(block)
        try:
            other.run(fastapi)
            other.run(Command('curl -sS http://localhost:8002/hello/v', []))
            other.run(Command('kill %1', []))
            other.run(Command('wait', []))
        finally:
            other.stop()
        (request,) = recorder.requests
    token = other.env['INFLUXDB_TOKEN']
    if api == 'v2':
        assert request.path == '/api/v2/write', request.path
        assert request.query == {
            'org': 'acme',
            'bucket': 'example',
            'precision': 'ns',
        }, request.query
        assert request.headers['authorization'] == f'Token {token}'
    else:
        assert request.path == '/api/v3/write_lp', request.path
        assert request.query == {
            'db': 'example',
            'precision': 'nanosecond',
        }, request.query
        assert request.headers['authorization'] == f'Bearer {token}'
    assert request.body.startswith(b'quickstart,endpoint=/hello/{name},')
