"""Data from outside, read without trusting it: YAML without anchors, aliases or deep nesting, the first
hostile thing in a data tree (a pack, a tool call's parameters), and labels fit for a reason whatever a
caller passed. Used by policy packs and the tool gateway."""

import math
from decimal import Decimal
from typing import Any

import yaml
from pydantic import BaseModel

MAX_PACK_DEPTH = 20            # nesting levels a pack may use (the shipped packs use 6)
MAX_PACK_CHARS = 64 * 1024     # a pack's text; the shipped packs are under 4 KiB


def tree_problem(value: Any, *, max_depth: int = MAX_PACK_DEPTH, max_nodes: int = 100_000) -> str | None:
    """The first thing that makes a data tree hostile (a loaded pack, a tool call's parameters): NaN or
    an infinity (float or Decimal) or an integer outside 64 bits at any depth, a non-string mapping key, nesting deeper than
    `max_depth`, or more than `max_nodes` values (which also stops a tree that contains itself).
    Iterative (no recursion), so a hostile tree cannot exhaust the stack."""
    stack: list[tuple[Any, str, int]] = [(value, "$", 0)]
    seen = 0
    while stack:
        v, path, depth = stack.pop()
        seen += 1
        if seen > max_nodes:
            return f"more than {max_nodes} values"
        if depth > max_depth:
            return f"{path}: nested deeper than {max_depth} levels"
        if (isinstance(v, float) and not math.isfinite(v)) or (isinstance(v, Decimal) and not v.is_finite()):
            return f"{path}: {v} is not a finite number"
        if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63:
            # No column or system of record holds it; and its decimal text may be too long to print.
            return f"{path}: an integer of {v.bit_length():,} bits is outside the 64-bit range"
        if isinstance(v, BaseModel):
            v = v.model_dump()
        if isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str):
                    return f"{path}: key {printable_label(k)} is not a string"
                stack.append((item, f"{path}.{printable_label(k)}", depth + 1))
        elif isinstance(v, (list, tuple, set, frozenset)):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(v))
    return None


def printable_label(value: Any) -> str:
    """A name or key fit for a reason or the trace, whatever a hostile caller passed (None, NUL bytes,
    10k characters): text, bounded."""
    text = value if isinstance(value, str) else repr(value)
    text = text.replace("\x00", "\\x00")
    return text if len(text) <= 64 else text[:61] + "..."


class _PackLoader(yaml.SafeLoader):
    """SafeLoader without anchors or aliases (no billion-laughs expansion) and with bounded nesting
    (no RecursionError from a deep document, no quadratic scan of thousands of open brackets). Used
    when libyaml is not available."""

    _depth = 0

    def fetch_flow_collection_start(self, token_class: Any) -> None:  # type: ignore[override]
        if self.flow_level >= MAX_PACK_DEPTH:
            raise yaml.scanner.ScannerError(None, None, f"nested deeper than {MAX_PACK_DEPTH} levels",
                                            self.get_mark())
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        event = self.peek_event()
        _refuse_event(event, self._depth)
        if not isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _refuse_event(event: Any, depth: int) -> None:
    """Anchors, aliases, and a collection opened at MAX_PACK_DEPTH nested collections."""
    if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
        raise yaml.composer.ComposerError(None, None, "anchors and aliases are not allowed in a policy pack",
                                          event.start_mark)
    if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)) and depth >= MAX_PACK_DEPTH:
        raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_PACK_DEPTH} levels",
                                          event.start_mark)


def load_yaml(text: str) -> Any:
    """The pack's YAML, safely: with libyaml, a streaming pass over the parser's events refuses anchors,
    aliases and deep nesting before anything is built, then the C safe loader builds it; without
    libyaml, the pure-Python `_PackLoader` does both."""
    if not yaml.__with_libyaml__:
        return yaml.load(text, Loader=_PackLoader)
    depth = 0
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        _refuse_event(event, depth)
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
    return yaml.load(text, Loader=yaml.CSafeLoader)
