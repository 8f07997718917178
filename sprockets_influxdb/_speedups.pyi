from typing import Any

def encode(
    name: Any,
    tags: Any,
    fields: Any,
    timestamp: Any,
    precision: Any,
    last: Any,
    /,
) -> str | None: ...
def configure(
    prefix_cache: dict[Any, str],
    measurement_cache: dict[str, str],
    field_key_cache: dict[str, str],
    series_limit: int,
    /,
) -> None: ...
