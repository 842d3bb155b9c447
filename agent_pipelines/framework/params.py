"""A tool call's parameters as the gateway sees them: bounded copies fit for the trace and the call digest
(whatever a hostile caller passed), and the nested keys a validated model silently dropped."""

import math
from typing import Any

from pydantic import BaseModel

from agent_pipelines.framework.safe_data import printable_label

MAX_PARAM_DEPTH = 32        # nesting levels a parameter tree may use
MAX_PARAM_NODES = 50_000    # values in one call's parameter tree
MAX_INT_BITS = 4096         # larger integers are recorded by size (their decimal text is unbounded)


def recordable(value: Any) -> Any:
    """A bounded, JSON-safe copy of whatever a caller passed, fit for the trace and the call digest:
    keys as strings, NaN/infinity as text, depth and size capped (a self-referencing tree ends)."""
    return _walk(value, 0, [MAX_PARAM_NODES])


def _walk(v: Any, depth: int, budget: list[int]) -> Any:
    # A module function, not a closure: a recursive closure is a reference cycle per call, which
    # only the cyclic garbage collector frees (issue 11).
    budget[0] -= 1
    if budget[0] < 0:
        return "<truncated>"
    if depth > MAX_PARAM_DEPTH:
        return "<too deep>"
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > MAX_INT_BITS:
        return f"<integer of {v.bit_length():,} bits>"  # str() of it raises past 4,300 digits
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, BaseModel):
        try:
            v = v.model_dump()
        except Exception:  # noqa: BLE001 - a model that cannot dump is still recorded, by its repr
            return printable_label(v)
    if isinstance(v, dict):
        return {(k if isinstance(k, str) else repr(k)): _walk(item, depth + 1, budget) for k, item in list(v.items())}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_walk(item, depth + 1, budget) for item in list(v)]
    return str(v)


def extra_keys(raw: Any, value: Any, path: str) -> list[str]:
    """Keys in the raw parameters that the validated model dropped (pydantic ignores unknown keys of
    nested models by default): each one is refused, so no hidden key rides along."""
    if isinstance(value, BaseModel):
        if not isinstance(raw, dict) or type(value).model_config.get("extra") == "allow":
            return []
        names: dict[str, str] = {}
        for n, f in type(value).model_fields.items():
            names[n] = n
            if f.alias:
                names[f.alias] = n
        out = [f"{path}.{k}" for k in raw if k not in names]
        for k, item in raw.items():
            if k in names:
                out += extra_keys(item, getattr(value, names[k], None), f"{path}.{k}")
        return out
    if isinstance(value, (list, tuple)) and isinstance(raw, (list, tuple)) and len(raw) == len(value):
        return [x for i, (r, v) in enumerate(zip(raw, value, strict=True)) for x in extra_keys(r, v, f"{path}[{i}]")]
    if isinstance(value, dict) and isinstance(raw, dict):
        return [x for k, r in raw.items() if k in value for x in extra_keys(r, value[k], f"{path}.{k}")]
    return []


MAX_RECORDED_CHARS = 4096  # per string, in the record of a refused call


def clipped(value: Any, limit: int = MAX_RECORDED_CHARS) -> Any:
    """`value` (already recordable) with every string longer than `limit` cut to its start and its
    length: what the trace keeps of a refused call. Redacting 600 KB of hostile text twice per refusal
    would cost more than the refusal."""
    if isinstance(value, str):
        return value if len(value) <= limit else f"{value[:limit]}...[{len(value):,} characters]"
    if isinstance(value, dict):
        return {k: clipped(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [clipped(v, limit) for v in value]
    return value
