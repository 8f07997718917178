"""gunicorn settings of the soak (bench/soak.py): only a hook.

A gunicorn worker resets SIGUSR2 when it starts; this installs again the
handler of ``integrations/stats_file.py`` (write the worker's counters,
then die by SIGKILL) in each worker, so that the soak knows exactly what
the worker it kills had not delivered.
"""

from __future__ import annotations

from typing import Any


def post_worker_init(worker: Any) -> None:
    from integrations import stats_file

    stats_file.handle_kill_signal()
