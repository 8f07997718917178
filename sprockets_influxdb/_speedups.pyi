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
def encode_slice(
    values: list[Any],
    start: int,
    stop: int,
    precision: Any,
    base_tags: dict[str, str] | None,
    outputs: dict[Any, list[Any]],
    /,
) -> int: ...
def float_repr(value: float, /) -> str | None: ...
def now_ns() -> int: ...
def give_back(moment: int, /) -> None: ...
def fast_add(client: object, measurement: object, /) -> bool: ...
def configure_add(client_add: object, module_add: object, /) -> None: ...
def configure_clock(offset: int, resolution: int, /) -> None: ...
def join_lines(lines: list[str], /) -> bytes | None: ...
