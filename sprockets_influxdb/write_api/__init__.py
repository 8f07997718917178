"""The write APIs of the servers the writer sends to, one module each.

The writer batches, retries and settles lines; what differs between
servers' write APIs is here: where to post, with which query parameters
and authorization, the names of the precisions, and how to read an error
(in particular which lines a 400 refused, and whether the others were
stored).

* :mod:`~sprockets_influxdb.write_api.v1`: InfluxDB 1.x ``/write``
  (also InfluxDB 2.x and 3, and VictoriaMetrics, compatibly);
* :mod:`~sprockets_influxdb.write_api.v2`: InfluxDB 2.x and Cloud
  ``/api/v2/write`` (also InfluxDB 3 and VictoriaMetrics);
* :mod:`~sprockets_influxdb.write_api.v3`: InfluxDB 3 ``/api/v3/write_lp``.
"""

from __future__ import annotations

from sprockets_influxdb.write_api import v1, v2, v3
from sprockets_influxdb.write_api.base import (
    Answer,
    Rejection,
    WriteAPI,
    split_path,
)

__all__ = [
    'APIS',
    'Answer',
    'Rejection',
    'WriteAPI',
    'by_name',
    'split_path',
    'v1',
    'v2',
    'v3',
]

#: The values of the ``api`` setting.
APIS = ('auto', 'v1', 'v2', 'v3')

_BY_NAME: dict[str, WriteAPI] = {
    'v1': v1.API(),
    'v2': v2.API(),
    'v3': v3.API(),
}


def by_name(name: str) -> WriteAPI:
    """The write API called *name*: ``v1``, ``v2`` or ``v3``."""
    return _BY_NAME[name]
