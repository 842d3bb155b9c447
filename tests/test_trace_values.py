"""The trace stores every traced value as plain JSON (framework/trace.py `_jsonable`): the walk over the
plain types gives exactly what the json round trip gives (the round trip is the reference), hostile values
included."""

import math
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum, IntEnum, StrEnum

import pytest
from pydantic import BaseModel

from agent_pipelines.framework.trace import _jsonable, _round_trip


class Colour(StrEnum):
    RED = "red"


class Level(IntEnum):
    HIGH = 3


class Kind(Enum):
    A = "a"


class Line(BaseModel):
    sku: str
    qty: float
    when: date
    tags: tuple[str, ...] = ()


class Snapshot(BaseModel):
    po: str
    lines: list[Line]
    by_no: dict[int, str] = {}
    seen: datetime | None = None
    colour: Colour = Colour.RED


SNAP = Snapshot(po="PO-1\x00", lines=[Line(sku="A\ud800", qty=float("nan"), when=date(2026, 1, 2), tags=("x",))],
                by_no={1: "one"}, seen=datetime(2026, 11, 30, 12, 0, tzinfo=UTC))

VALUES = [
    None, True, 0, -7, 2**70, 0.1, -0.0, float("inf"), float("-inf"), "", "plain", "nul\x00inside", "lone \udc80",
    [1, "a", None, [2.5, {"k": "v"}]], ("t", 1), {"a\x00b": 1, "nested": {"x": [float("nan")]}},
    {1: "int key"}, {True: "bool key", None: "none key"}, {"mixed": {2: "b"}},
    date(2026, 11, 30), datetime(2026, 11, 30, 1, 2, 3, 456, tzinfo=UTC), Decimal("12.50"), Colour.RED, Level.HIGH,
    Kind.A, {"set": {1}}, b"bytes", SNAP, [SNAP, {"model": SNAP}], {"models": (SNAP,)},
]


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and (a == b if not isinstance(a, (dict, list)) else (
        a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a) if isinstance(a, dict)
        else len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))))


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_the_walk_gives_what_the_json_round_trip_gives(value: object) -> None:
    walked, reference = _jsonable(value), _round_trip(value)
    assert _same(walked, reference), (walked, reference)
    assert "\x00" not in repr(walked)  # PostgreSQL refuses NUL in text and json
