"""A seeded, bounded fuzz of the compiled fast path, hostile objects included.

The compiled encoder (``_speedups.encode`` and ``encode_slice``) reads
dicts and calls the ``__hash__`` and ``__eq__`` of the objects in them, and
the cyclic garbage collector may run finalizers at any allocation.  Here
the points carry objects whose special methods (``__hash__``, ``__eq__``,
``__lt__``, ``__str__``, ``__index__``, ``__float__``, ``__del__``...) do
something when called: empty the encoder's caches, swap the caches the
compiled module was configured with, collect garbage, leave garbage with
finalizers behind, encode another point, raise; or, in the chaos rounds,
change the point's own tags, fields and runs while it is encoded.

Checked, with the same objects and from the same caches:

* the compiled path never raises for a point (it leaves to Python what it
  cannot do) and never crashes;
* :func:`line_protocol.encode` as a whole (the compiled path, then Python
  for what it leaves) gives the same line or the same type of exception as
  :func:`line_protocol.encode_python`, and leaves the same runs in
  ``last``; the writer's slice loop gives the same lines per database;
* in the chaos rounds, where the outcome depends on when each finalizer
  runs, only that nothing crashes and the slice keeps its contract.

And the compiled float formatting against ``repr()`` on random bit
patterns, decimal-looking values and edge cases.

The counts are small here; ``.ci/sanitize`` runs the same checks with a
build under AddressSanitizer and larger counts, set by
``SPROCKETS_INFLUXDB_FUZZ_POINTS``, ``SPROCKETS_INFLUXDB_FUZZ_DOUBLES`` and
``SPROCKETS_INFLUXDB_FUZZ_SEED``.
"""

from __future__ import annotations

import array
import contextlib
import gc
import math
import os
import random
import struct
import sys
import typing
from collections.abc import Callable, Iterator
from functools import partial

import pytest

from sprockets_influxdb import line_protocol
from tests.test_speedups import speedups

POINTS = int(os.environ.get('SPROCKETS_INFLUXDB_FUZZ_POINTS', '1200'))
DOUBLES = int(os.environ.get('SPROCKETS_INFLUXDB_FUZZ_DOUBLES', '200000'))
SEED = int(os.environ.get('SPROCKETS_INFLUXDB_FUZZ_SEED', '20261111'))

CACHES = (
    line_protocol._measurement_cache,
    line_protocol._tag_key_cache,
    line_protocol._tag_value_cache,
    line_protocol._field_key_cache,
    line_protocol._tag_pair_cache,
    line_protocol._prefix_cache,
)
SERIES_LIMIT = 3  # small, so that ``last`` is emptied now and then


# Hostile objects -------------------------------------------------------------


class World:
    """What the hooks act on: armed only while a point is encoded."""

    armed = False
    depth = 0
    rng = random.Random(0)
    swapped = False
    tags: typing.ClassVar[dict[object, object]] = {}
    fields: typing.ClassVar[dict[object, object]] = {}
    last: typing.ClassVar[dict[object, object]] = {}
    values: typing.ClassVar[list[object]] = []
    outputs: typing.ClassVar[dict[object, object]] = {}


def configure(caches: tuple[dict[typing.Any, str], ...] | None) -> None:
    """Give the compiled module the encoder's caches, or other ones."""
    if caches is None:
        caches = (
            line_protocol._prefix_cache,
            line_protocol._measurement_cache,
            line_protocol._field_key_cache,
        )
    speedups().configure(*caches, SERIES_LIMIT)


def clear_caches() -> None:
    for cache in CACHES:
        cache.clear()


def swap_caches() -> None:
    # Copies, then back: going back releases the copies, which the
    # compiled module may be looking things up in.
    if World.swapped:
        configure(None)
    else:
        configure(
            (
                dict(line_protocol._prefix_cache),
                dict(line_protocol._measurement_cache),
                dict(line_protocol._field_key_cache),
            )
        )
    World.swapped = not World.swapped


def reenter() -> None:
    line_protocol.encode('m', {'k': 'v'}, {'f': 1.5}, 1.0)


class Cycle:
    """Garbage with a finalizer, for the collector to find later."""

    def __init__(self, action: str) -> None:
        self.action = action
        self.cycle = self

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            act(self.action)


def leave_garbage(action: str) -> Callable[[], None]:
    def leave() -> None:
        Cycle(action)

    return leave


def _quietly(change: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        with contextlib.suppress(KeyError, IndexError):
            change()

    return run


def _raise(kind: type[Exception]) -> Callable[[], None]:
    def run() -> None:
        raise kind('raised by a hostile hook')

    return run


# Actions that cannot change what a point is written as: the caches only
# hold what the Python encoder would compute again.
EFFECTS: dict[str, Callable[[], None]] = {
    'clear': clear_caches,
    'collect': lambda: gc.collect(0) and None,
    'swap': swap_caches,
    'reenter': reenter,
    'garbage': leave_garbage('clear'),
    'garbage-swap': leave_garbage('swap'),
    'garbage-collect': leave_garbage('collect'),
}
RAISES: dict[str, Callable[[], None]] = {
    kind.__name__: _raise(kind)
    for kind in (ValueError, TypeError, KeyError, RuntimeError, LookupError)
}


def drop_databases() -> None:
    # The hooked databases of the slice left to its own references.
    for index in range(1, len(World.values), 6):
        if isinstance(World.values[index], Str):
            World.values[index] = str.__str__(World.values[index])


def poison_caches() -> None:
    # What the caches hold is the Python encoder's business: anything.
    for cache in (
        line_protocol._prefix_cache,
        line_protocol._measurement_cache,
        line_protocol._field_key_cache,
    ):
        for key in list(cache)[:3]:
            cache[key] = World.rng.choice(
                [7, b'm', None, Str('m', {}), 'é', ['m']]
            )


# Actions that change the point being encoded: chaos rounds only.
CHANGES: dict[str, Callable[[], None]] = {
    'grow-tags': lambda: World.tags.update(
        {f'z{index}': 'v' for index in range(World.rng.randrange(1, 30))}
    ),
    'shrink-tags': _quietly(lambda: World.tags.popitem()),
    'clear-tags': lambda: World.tags.clear(),
    'grow-fields': lambda: World.fields.update(
        {f'g{index}': index for index in range(World.rng.randrange(1, 30))}
    ),
    'shrink-fields': _quietly(lambda: World.fields.popitem()),
    'clear-fields': lambda: World.fields.clear(),
    'clear-last': lambda: World.last.clear(),
    'poison-last': lambda: World.last.update(
        {key: [Int(0, {'__del__': 'clear-last'}), 1.5] for key in HEADS}
    ),
    'shrink-values': _quietly(lambda: World.values.__delitem__(-1)),
    'clear-values': lambda: World.values.clear(),
    'drop-databases': drop_databases,
    'clear-outputs': lambda: World.outputs.clear(),
    'poison-caches': poison_caches,
    'threshold': lambda: gc.set_threshold(World.rng.choice([1, 2, 50])),
    'garbage-change': lambda: leave_garbage(
        World.rng.choice(['grow-tags', 'shrink-tags', 'clear-fields'])
    )(),
}
ACTIONS = {**EFFECTS, **RAISES, **CHANGES}


def act(action: str) -> None:
    """Do *action* when armed, not too deep in actions done by actions."""
    if not World.armed or World.depth > 2:
        return
    World.depth += 1
    try:
        ACTIONS[action]()
    finally:
        World.depth -= 1


Hooks = dict[str, str]


def hook(instance: typing.Any, method: str) -> None:
    """Do what *instance* is set to do when *method* is called."""
    action = instance.hooks.get(method)
    if action is None:
        return
    if method == '__del__':
        # What a finalizer raises is only printed (and pytest's warning).
        with contextlib.suppress(Exception):
            act(action)
    else:
        act(action)


def _hooked(base: type) -> type:
    """A subclass of *base* whose special methods do their hook first."""

    def make(method: str) -> Callable[..., object]:
        original = getattr(base, method)

        def hooked(self: typing.Any, *args: object) -> object:
            hook(self, method)
            return original(self, *args)

        hooked.__name__ = method
        return hooked

    methods = ['__hash__', '__eq__', '__ne__', '__lt__', '__str__']
    methods += {
        int: ['__index__', '__int__', '__float__'],
        float: ['__float__', '__int__'],
        str: [],
    }[base]
    namespace: dict[str, object] = {method: make(method) for method in methods}

    def new(cls: type, value: object, hooks: Hooks) -> object:
        self = base.__new__(cls, value)  # type: ignore[call-overload]
        self.hooks = hooks
        return self

    namespace['__new__'] = new
    namespace['__del__'] = lambda self: hook(self, '__del__')
    return type(f'Hooked{base.__name__.title()}', (base,), namespace)


Str = _hooked(str)
Int = _hooked(int)
Float = _hooked(float)


class Thing:
    """Hashed, compared and converted as the value it stands for."""

    def __init__(self, value: object, hooks: Hooks) -> None:
        self.value = value
        self.hooks = hooks

    def __hash__(self) -> int:
        hook(self, '__hash__')
        return hash(self.value)

    def __eq__(self, other: object) -> bool:
        hook(self, '__eq__')
        return bool(self.value == other)

    def __str__(self) -> str:
        hook(self, '__str__')
        return str(self.value)

    def __index__(self) -> int:
        hook(self, '__index__')
        return self.value if type(self.value) is int else 0

    def __del__(self) -> None:
        hook(self, '__del__')


class Liar(str):
    """Equal to every str, of one hash: chaos rounds only."""

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return 7


# Points ----------------------------------------------------------------------

# Each pool starts with five good values.
NAMES = ['m', 'cpu', 'disk io', 'a,b', 'm2', 'é', '#x', '', 'time', 'x\\y']
KEYS = ['k', 'host', 'f', 'a b', 'x=y', 'c,d', 'é', 'time', '', 'v']
TEXTS = ['v', 'web-1', 'a b', 'p=q', 'r,s', '日', '', 'x\\', 'x\ny', '1']
HEADS = ['m', 'cpu', 'm,k=v', 'cpu,host=web-1', 'm,host=web-1,k=v']
METHODS = [
    '__hash__',
    '__eq__',
    '__ne__',
    '__lt__',
    '__str__',
    '__index__',
    '__int__',
    '__float__',
    '__del__',
]
PRECISIONS = ['n', 'u', 'ms', 's', 'm', 'h']
FAST = ['n', 'u', 'ms', 's']
TIMES = [
    1_700_000_000_000_000_000,
    1_700_000_000_000_001_000,
    1_700_000_000_123_456_789,
    2**63 - 1,
    -(2**63),
    0,
    -1,
    10**25,
]


class Generator:
    """Seeded points whose parts are hostile now and then.

    *profile* picks the hooks: ``effects`` (nothing that changes the
    outcome), ``raises`` (hooks raise, nothing else), ``chaos`` (all of
    them, and liars).
    """

    def __init__(self, rng: random.Random, profile: str) -> None:
        self.rng = rng
        self.profile = profile
        self.wild = True
        self.actions = {
            'effects': sorted(EFFECTS),
            'raises': sorted(RAISES),
            'chaos': sorted(ACTIONS),
        }[profile]

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def hooks(self) -> Hooks:
        if self.profile == 'chaos' and self.chance(0.3):
            # What the compiled path must survive: the object's holder
            # changed while it is looked up, then the caches or runs
            # emptied as it is released.
            return {
                self.rng.choice(['__hash__', '__eq__']): self.rng.choice(
                    ['clear-tags', 'shrink-tags', 'clear-fields', 'clear-last']
                ),
                '__del__': self.rng.choice(
                    ['clear', 'swap', 'clear-last', 'collect']
                ),
            }
        hooks: Hooks = {}
        for _ in range(self.rng.choice([1, 1, 2, 3])):
            method = self.rng.choice(METHODS)
            if method == '__del__' and self.profile == 'raises':
                continue  # an exception in a finalizer is only printed
            hooks[method] = self.rng.choice(self.actions)
        return hooks

    def text(self, pool: list[str]) -> object:
        text = self.rng.choice(pool if self.wild else pool[:5])
        if self.chance(0.15 if self.wild else 0.02):
            return Str(text, self.hooks())
        if self.profile == 'chaos' and self.chance(0.03):
            return Liar(text)
        return text

    def tag_value(self) -> object:
        if self.chance(0.7 if self.wild else 0.97):
            return self.text(TEXTS)
        return self.rng.choice(
            [
                lambda: None,
                lambda: self.rng.randrange(-3, 4),
                lambda: 1.5,
                lambda: True,
                lambda: Int(self.rng.randrange(3), self.hooks()),
                lambda: Float(0.5, self.hooks()),
                lambda: Thing(self.rng.choice(TEXTS), self.hooks()),
                lambda: [1],
            ]
        )()

    def tags(self) -> dict[object, object]:
        size = self.rng.choice([0, 0, 1, 1, 2, 3, 11, 12])
        if not self.wild and size > 3:
            # Many tags: the lookup key is a new tuple, not a recycled one.
            return {f't{index}': 'v' for index in range(size)}
        return {self.text(KEYS): self.tag_value() for _ in range(size)}

    def field_value(self) -> object:
        rng = self.rng
        if self.chance(0.6 if self.wild else 0.95):
            return rng.choice(
                [
                    lambda: rng.choice([True, False]),
                    lambda: rng.randrange(-(2**40), 2**40),
                    lambda: random_double(rng),
                    lambda: rng.choice(['ok', '', 'a b', 'x' * 100]),
                ]
            )()
        return rng.choice(
            [
                lambda: rng.choice([True, False]),
                lambda: rng.randrange(-(2**63), 2**63),
                lambda: rng.choice(
                    [2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 0, -1]
                ),
                lambda: random_double(rng),
                lambda: rng.choice(EDGE_DOUBLES),
                lambda: rng.choice(
                    ['', 'ok', 'say "hi"', 'a\\b', 'é', 'a\nb', 'x' * 5000]
                ),
                lambda: Str('text', self.hooks()),
                lambda: Int(rng.randrange(-5, 5), self.hooks()),
                lambda: Float(rng.random(), self.hooks()),
                lambda: Thing(1, self.hooks()),
                lambda: rng.choice([None, b'x', 1j]),
            ]
        )()

    def fields(self) -> dict[object, object]:
        size = self.rng.choice([0, 1, 1, 2, 3, 4])
        return {self.text(KEYS): self.field_value() for _ in range(size)}

    def timestamp(self) -> object:
        rng = self.rng
        if self.chance(0.6 if self.wild else 0.95):
            return rng.choice(TIMES[:3]) + rng.randrange(4) * 1000
        return rng.choice(
            [
                lambda: rng.choice(TIMES),
                lambda: rng.choice(TIMES[:3]) + rng.randrange(4) * 1000,
                lambda: rng.uniform(0, 4e9),
                lambda: rng.choice([1.001, 0.0, -1.5, 9e9, 1e17, math.nan]),
                lambda: Int(TIMES[0], self.hooks()),
                lambda: Float(1.5, self.hooks()),
                lambda: True,
            ]
        )()

    def run(self) -> object:
        rng = self.rng
        start = TIMES[0] // rng.choice([1, 1000, 10**6, 10**9])
        return rng.choice(
            [
                lambda: [start, start + rng.randrange(3)],
                lambda: [start, start],
                lambda: [0, 10.5],
                lambda: [0, True],
                lambda: [start],
                lambda: (start, start),
                lambda: [Int(start, self.hooks()), Int(start, self.hooks())],
                lambda: [0, Thing(start, self.hooks())],
                lambda: [10**20, 10**20],
            ]
        )()

    def last(self) -> dict[object, object] | None:
        if self.chance(0.3):
            return None
        return {
            self.text(HEADS): self.run()
            for _ in range(self.rng.randrange(SERIES_LIMIT + 1))
        }

    def point(self) -> tuple[object, ...]:
        # Half the points are mostly what applications send, which the
        # compiled path encodes; the others anything.
        self.wild = self.chance(0.5)
        return (
            self.text(NAMES) if self.chance(0.9) else 7,
            self.tags(),
            self.fields(),
            self.timestamp(),
            self.rng.choice(PRECISIONS if self.chance(0.2) else FAST),
        )


def random_double(rng: random.Random) -> float:
    mode = rng.randrange(4)
    if mode == 0:
        value = 10 ** rng.uniform(-7, 17)
    elif mode == 1:
        value = round(10 ** rng.uniform(-6, 15.7), rng.randrange(11))
    elif mode == 2:
        (value,) = struct.unpack('<d', rng.randbytes(8))
    else:
        value = rng.randrange(1, 2**53) / 2 ** rng.randrange(61)
    return -value if rng.random() < 0.5 else value


# The harness -----------------------------------------------------------------


def copy_last(last: dict[object, object] | None) -> typing.Any:
    """What the encoders may change in *last*, copied: its exact lists."""
    if last is None:
        return None
    return {
        key: list(run) if type(run) is list else run
        for key, run in last.items()
    }


Outcome = tuple[str, object]


def outcome(call: Callable[[], object]) -> Outcome:
    """A line, or the type of the exception raised."""
    try:
        return ('line', call())
    except Exception as error:
        return ('error', type(error))


class Armed:
    """Hooks armed within; the caches and settings put back after."""

    def __init__(
        self,
        tags: object,
        fields: object,
        last: object,
        values: list[object] | None = None,
        outputs: dict[object, object] | None = None,
    ) -> None:
        World.tags = tags if isinstance(tags, dict) else {}
        World.fields = fields if isinstance(fields, dict) else {}
        World.last = last if isinstance(last, dict) else {}
        World.values = values if values is not None else []
        World.outputs = outputs if outputs is not None else {}

    def __enter__(self) -> None:
        World.armed = True

    def __exit__(self, *exc_info: object) -> None:
        World.armed = False
        gc.set_threshold(700, 10, 10)
        if World.swapped:
            swap_caches()


def snapshot() -> list[dict[typing.Any, str]]:
    return [dict(cache) for cache in CACHES]


def restore(saved: list[dict[typing.Any, str]]) -> None:
    for cache, contents in zip(CACHES, saved):
        cache.clear()
        cache.update(contents)


@pytest.fixture
def world() -> Iterator[World]:
    """A clean encoder with a small series limit, put back after."""
    thresholds = gc.get_threshold()
    limit = line_protocol._SERIES_LIMIT
    line_protocol._SERIES_LIMIT = SERIES_LIMIT
    clear_caches()
    configure(None)
    try:
        yield World()
    finally:
        World.armed = False
        if World.swapped:
            swap_caches()
        World.tags, World.fields, World.last, World.values = {}, {}, {}, []
        World.outputs = {}
        line_protocol._SERIES_LIMIT = limit
        clear_caches()
        speedups().configure(
            line_protocol._prefix_cache,
            line_protocol._measurement_cache,
            line_protocol._field_key_cache,
            limit,
        )
        gc.set_threshold(*thresholds)
        gc.collect()


def encode_compiled(
    point: tuple[object, ...], last: object
) -> tuple[str | None, Outcome]:
    """What line_protocol.encode does: the compiled path, then Python."""
    fast = speedups().encode(*point, last)
    assert fast is None or type(fast) is str
    if fast is not None:
        return fast, ('line', fast)
    return None, outcome(partial(line_protocol.encode_python, *point, last))


@pytest.mark.parametrize('profile', ['effects', 'raises'])
def test_hostile_points_give_the_python_outcome(
    world: World, profile: str
) -> None:
    rng = random.Random(f'{SEED}-points-{profile}')
    World.rng = random.Random(SEED)
    generator = Generator(rng, profile)
    compiled = 0
    for _ in range(POINTS):
        point = generator.point()
        last = generator.last()
        # Once unarmed, so that the caches hold what the point needs.
        outcome(partial(line_protocol.encode_python, *point, copy_last(last)))
        saved = snapshot()
        python_last = copy_last(last)
        with Armed(point[1], point[2], python_last):
            expected = outcome(
                partial(line_protocol.encode_python, *point, python_last)
            )
        restore(saved)
        fast_last = copy_last(last)
        with Armed(point[1], point[2], fast_last):
            fast, got = encode_compiled(point, fast_last)
        compiled += fast is not None
        assert got == expected, point
        assert fast_last == python_last, point
        if rng.random() < 0.02:
            clear_caches()
    assert compiled > POINTS // 20


def plain(point: tuple[object, ...]) -> tuple[object, ...]:
    """The point with its hooked text as plain str."""

    def text(value: object) -> object:
        return str.__str__(value) if isinstance(value, Str) else value

    name, tags, fields, timestamp, precision = point
    return (
        text(name),
        {text(key): text(value) for key, value in tags.items()},  # type: ignore[attr-defined]
        {text(key): value for key, value in fields.items()},  # type: ignore[attr-defined]
        timestamp,
        precision,
    )


def test_chaos_never_crashes(world: World) -> None:
    rng = random.Random(f'{SEED}-chaos')
    World.rng = random.Random(SEED)
    generator = Generator(rng, 'chaos')
    for _ in range(POINTS):
        point = generator.point()
        last = generator.last()
        # Unarmed, the same point in plain text: the line head and keys
        # its hooked text stands for are in the caches.
        outcome(partial(line_protocol.encode_python, *plain(point), None))
        for _ in range(rng.randrange(3)):
            Cycle(rng.choice(sorted(CHANGES)))
        with Armed(point[1], point[2], last):
            gc.set_threshold(rng.choice([1, 1, 5, 100]))
            encode_compiled(point, last)
            gc.set_threshold(700)
        if rng.random() < 0.05:
            clear_caches()


def python_entry(
    entry: list[object],
    outputs: dict[typing.Any, list[typing.Any]],
    base_tags: dict[str, str] | None,
    unique: bool,
) -> Outcome:
    """What the writer does with an entry the fast path leaves to it."""

    def encode() -> None:
        sequence, database, name, tags, fields, timestamp = entry
        output = outputs.setdefault(database, [[], [], {} if unique else None])
        if base_tags:
            tags = {**base_tags, **tags}  # type: ignore[dict-item]
        line = line_protocol.encode_python(
            name,  # type: ignore[arg-type]
            tags,  # type: ignore[arg-type]
            fields,  # type: ignore[arg-type]
            timestamp,  # type: ignore[arg-type]
            'ms',
            output[2],
        )
        output[0].append(sequence)
        output[1].append(line)

    return outcome(encode)


def slice_outputs(
    unique: bool, lasts: dict[str, typing.Any]
) -> dict[typing.Any, list[typing.Any]]:
    return {
        database: [[], [], copy_last(lasts[database]) if unique else None]
        for database in ('db', 'other')
    }


def run_slices(
    values: list[object],
    outputs: dict[typing.Any, list[typing.Any]],
    base_tags: dict[str, str] | None,
    unique: bool,
) -> list[Outcome]:
    """The writer's loop: the fast path, and Python for what it leaves."""
    fast_slice = speedups().encode_slice
    errors: list[Outcome] = []
    at = 0
    while at + 6 <= len(values):
        # Copies iterated: a finalizer may empty ``outputs`` (chaos).
        sizes = {key: len(output[0]) for key, output in outputs.copy().items()}
        stop = len(values)
        if stop < at + 6:
            break  # values changed by a finalizer (chaos)
        done = fast_slice(values, at, stop, 'ms', base_tags, outputs)
        assert type(done) is int
        assert at <= done <= stop
        assert done % 6 == 0
        for key, output in outputs.copy().items():
            assert len(output[0]) == len(output[1])
            assert len(output[0]) - sizes.get(key, 0) <= (done - at) // 6
        at = done
        if at + 6 > len(values):
            break
        entry = values[at : at + 6]
        if len(entry) < 6:
            break  # values changed by a finalizer (chaos)
        result = python_entry(entry, outputs, base_tags, unique)
        if result[0] == 'error':
            errors.append((str(entry[0]), result[1]))
        at += 6
    return errors


def released_database(
    values: list[object], base_tags: dict[str, str] | None
) -> None:
    """The first entries as issue 11 found them freeing what is read.

    Encoding the first point drops the slice's database from ``values``
    (the hash of a tag value), so that moving to the second entry's
    database releases it, and its finalizer empties ``outputs``.
    """
    # The head cached, from caches a 'poison-caches' may have spoilt.
    warm = partial(
        line_protocol.encode_python,
        'm',
        {**(base_tags or {}), 'k': 'v'},
        {'f': 1},
        1.0,
    )
    if outcome(warm)[0] == 'error':
        clear_caches()
        warm()
    values[0:12] = [
        0,
        Str('db', {'__del__': 'clear-outputs'}),
        'm',
        {'k': Str('v', {'__hash__': 'drop-databases'})},
        {'f': 1},
        TIMES[0],
        1,
        'other',
        'm',
        {'k': 'v'},
        {'f': 2},
        TIMES[0],
    ]


@pytest.mark.parametrize('profile', ['effects', 'raises', 'chaos'])
def test_hostile_slices(world: World, profile: str) -> None:
    rng = random.Random(f'{SEED}-slices-{profile}')
    World.rng = random.Random(SEED)
    generator = Generator(rng, profile)
    for _ in range(max(1, POINTS // 8)):
        base_tags = rng.choice([None, {}, {'host': 'web-1'}])
        unique = rng.random() < 0.7
        lasts = {'db': generator.last() or {}, 'other': {}}
        values: list[object] = []
        for sequence in range(rng.randrange(1, 9)):
            name, tags, fields, timestamp, _ = generator.point()
            database = rng.choice(
                ['db', 'db', 'other', Str('db', generator.hooks())]
            )
            values += [sequence, database, name, tags, fields, timestamp]
        if profile == 'chaos':
            if len(values) >= 12 and rng.random() < 0.2:
                released_database(values, base_tags)
            outputs = slice_outputs(unique, lasts)
            for _ in range(rng.randrange(3)):
                Cycle(rng.choice(sorted(CHANGES)))
            last = outputs['db'][2]
            with Armed(values[3], values[4], last, values, outputs):
                gc.set_threshold(rng.choice([1, 5, 100]))
                run_slices(values, outputs, base_tags, unique)
            continue
        saved = snapshot()
        expected_outputs = slice_outputs(unique, lasts)
        expected_errors = []
        with Armed(values[3], values[4], expected_outputs['db'][2]):
            for at in range(0, len(values), 6):
                result = python_entry(
                    values[at : at + 6], expected_outputs, base_tags, unique
                )
                if result[0] == 'error':
                    expected_errors.append((str(values[at]), result[1]))
        restore(saved)
        outputs = slice_outputs(unique, lasts)
        with Armed(values[3], values[4], outputs['db'][2]):
            errors = run_slices(values, outputs, base_tags, unique)
        assert errors == expected_errors
        assert outputs == expected_outputs


# The float text --------------------------------------------------------------


def _neighbours(value: float) -> list[float]:
    below = math.nextafter(value, -math.inf)
    above = math.nextafter(value, math.inf)
    return [below, value, above]


EDGE_DOUBLES: list[float] = sorted(
    {
        value
        for base in [
            0.0,
            5e-324,
            2.2250738585072014e-308,
            2.2250738585072009e-308,
            1e-4,
            9.999999999999999e-05,
            1e-5,
            1e-6,
            0.1,
            0.3,
            2.675,
            1e15,
            1e16,
            1e17,
            1e22,
            1e23,
            2.0**52,
            2.0**53,
            2.0**53 + 2,
            2.0**63,
            1.7976931348623157e308,
            4503599627370495.5,
            732318598303257.2,
        ]
        + [10.0**power for power in range(-325, 309)]
        + [2.0**power for power in range(-1074, 1024, 7)]
        + [float(2**53 - offset) for offset in range(64)]
        + [float(2**53 + 2 * offset) for offset in range(64)]
        for value in _neighbours(base)
    }
)
EDGE_DOUBLES += [-value for value in EDGE_DOUBLES] + [
    math.inf,
    -math.inf,
    math.nan,
]


def doubles(count: int, seed: int) -> Iterator[float]:
    """The edge cases, then *count* doubles: a quarter of them any bit
    pattern, the rest in the range the fast formatting covers."""
    yield from EDGE_DOUBLES
    rng = random.Random(seed)
    chunk = 65536
    for start in range(0, count, chunk):
        size = min(chunk, count - start)
        bits = array.array('d')
        bits.frombytes(rng.randbytes(8 * (size // 4)))
        if sys.byteorder != 'little':
            bits.byteswap()
        yield from bits
        for _ in range(size - size // 4):
            yield random_double(rng)


def test_the_compiled_float_text_is_repr(world: World) -> None:
    _speedups = speedups()
    float_repr = _speedups.float_repr
    encode = _speedups.encode
    line_protocol.encode_python('m', {}, {'f': 1.5}, 1.0)
    fast = checked = 0
    for index, value in enumerate(doubles(DOUBLES, SEED)):
        text = float_repr(value)
        if text is not None:
            assert text == repr(value), value
            fast += 1
        elif 1e-6 < abs(value) < 2**52:
            # Only powers of two are left to dtoa in that range.
            assert math.frexp(abs(value))[0] == 0.5, value
        if index % 16 == 0 and math.isfinite(value):
            line = encode('m', {}, {'f': value}, 1.0, 'ms', None)
            assert line == f'm f={value!r} 1000', value
            checked += 1
    assert fast > DOUBLES // 2
    assert checked > DOUBLES // 20
