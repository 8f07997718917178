"""Read what ``bench/soak.py --profile DIRECTORY`` recorded.

py-spy recorded each app with the library (its processes: gunicorn's
workers too) once healthy, before the first fault, once in each fault
(from its start to 5 s after its end) and once healthy after the last,
keeping only the samples of threads that held the GIL (``--gil``), 200 a
second.  This prints, for each recording, how much of the time each kind
of thread held the GIL: the request threads (gunicorn's thread pool, the
main thread of an event loop server), the library's writer thread, the
others; and where the writer thread held it, its most frequent frames.

    python bench/_soak_profile.py DIRECTORY [APP ...]

Percentages are of one core's time (two gunicorn workers can add up to
200%).
"""

from __future__ import annotations

import glob
import os
import re
import sys
from collections import Counter

WRITER = 'sprockets-influxdb-writer'
RATE = 200.0
_THREAD = re.compile(r'^thread \(0x[0-9a-fA-F]+\): |^thread \(\d+\): ')


def kind(thread: str) -> str:
    if thread == WRITER:
        return 'writer'
    if thread.startswith('ThreadPoolExecutor') or thread == 'MainThread':
        return 'requests'
    return 'other'


def read(path: str) -> tuple[Counter[str], Counter[str]]:
    """Seconds of GIL held by kind of thread, and by the writer's frames."""
    held: Counter[str] = Counter()
    frames: Counter[str] = Counter()
    with open(path, errors='replace') as handle:
        for line in handle:
            stack, _, count = line.rstrip('\n').rpartition(' ')
            if not stack or not count.isdigit():
                continue
            seconds = int(count) / RATE
            parts = stack.split(';')
            thread = next(
                (_THREAD.sub('', part) for part in parts
                 if _THREAD.match(part)),
                '?',
            )  # fmt: skip
            held[kind(thread)] += seconds
            if thread == WRITER:
                inner = [part.split(' (')[0] for part in parts[-3:]]
                frames[' < '.join(reversed(inner))] += seconds
    return held, frames


def report(directory: str, app: str) -> None:
    print(f'{app}: GIL held, % of one core (py-spy --gil, 200 samples/s)')
    print(f'  {"recording":<16}{"seconds":>8}{"requests":>10}{"writer":>8}'
          f'{"other":>8}')  # fmt: skip
    spans = []
    for span in sorted(
        glob.glob(os.path.join(directory, f'{app}.*.span')),
        key=lambda path: int(path.rsplit('.', 2)[1]),
    ):
        with open(span) as handle:
            label, seconds = handle.read().split('\n')[:2]
        path = span[: -len('.span')] + '.txt'
        if not os.path.exists(path):
            print(f'  {label:<16}  (no recording: see {path[:-4]}.log)')
            continue
        held, frames = read(path)
        spans.append((label, frames))
        print(
            f'  {label:<16}{float(seconds):>8.1f}'
            + ''.join(
                f'{100 * held[k] / float(seconds):>{width}.1f}'
                for k, width in (('requests', 10), ('writer', 8),
                                 ('other', 8))
            )
        )  # fmt: skip
    for label, frames in spans:
        top = frames.most_common(4)
        if not top:
            continue
        print(f'  writer thread, {label}:')
        for leaf, seconds in top:
            print(f'    {1e3 * seconds:7.0f} ms  {leaf}')


def main() -> None:
    directory = sys.argv[1]
    apps = sys.argv[2:] or sorted(
        {
            os.path.basename(path).split('.')[0]
            for path in glob.glob(os.path.join(directory, '*.span'))
        }
    )
    for app in apps:
        report(directory, app)


if __name__ == '__main__':
    main()
