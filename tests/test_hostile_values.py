"""Hostile values never steer the gateway, and policy packs load safely.

Parameters: NaN and infinities at any depth, non-string keys, unknown nested keys and control
characters are refused (ToolBlocked, recorded, the tool not run); constraints on optional parameters
apply only to a given value; `any_of` alternatives. Packs: aliases, deep nesting, NaN/infinity in
any numeric setting and anything else malformed raise PolicyError, fast. Property tests feed random
trees through the gateway and random texts and structures through `PolicyPack.from_yaml`."""

import math
import random
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from sqlalchemy import select

from agent_pipelines.framework.gateway import ToolGateway
from agent_pipelines.framework.tools import Impact, Tool, ToolBlocked, ToolKind, ToolRegistry
from agent_pipelines.framework.policy import Constraint, PolicyError, PolicyPack
from agent_pipelines.framework.tables import policy_decisions, tool_calls
from agent_pipelines.framework.trace import Tracer

NAN, INF = float("nan"), float("inf")


class Inner(BaseModel):
    x: float
    tags: list[str] = []


class Tree(BaseModel):
    value: int = 0
    items: list[float] = []
    inner: Inner | None = None
    inners: list[Inner] = []
    label: str = ""


class Mail(BaseModel):
    to: str
    subject: str
    body: str = ""
    cc: str | None = None


TOOLS_YAML = """
workflow: t
version: "1"
allowed_tools: [tree, mail]
constraints:
  tree:
    items: {min: 0, max: 100}
  mail:
    body: {multiline: true}
    cc: {email_domains: [example.com], optional: true}
    to:
      any_of:
        - {email_domains: [example.com]}
        - {one_of: [partner@other.org, vendor@supplier.net]}
"""


def _recording_tool(name: str, model: type[BaseModel], calls: list[Any]) -> Tool:
    def fn(conn, p):  # type: ignore[no-untyped-def]
        calls.append(p)
        return {"ok": True}

    return Tool(name, model, ToolKind.READ, Impact.LOW, fn)


def make(project, calls: list[Any], run_id: str = "run-1") -> ToolGateway:  # type: ignore[no-untyped-def]
    policy = PolicyPack.from_yaml(TOOLS_YAML)
    tracer = Tracer(project.db, workflow="t", intent_id="t:1", run_id=run_id)
    registry = ToolRegistry([_recording_tool("tree", Tree, calls), _recording_tool("mail", Mail, calls)])
    return ToolGateway(registry, policy, project.db, tracer, sleep=lambda s: None, rng=random.Random(7))


def recorded(project) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    with project.db.connect() as conn:
        decisions = conn.execute(select(policy_decisions.c.decision, policy_decisions.c.rule)
                                 .order_by(policy_decisions.c.id)).all()
        statuses = conn.execute(select(tool_calls.c.status).where(tool_calls.c.status != "ok")
                                .order_by(tool_calls.c.id)).scalars().all()
    assert len(decisions) == len(statuses)
    return [(d, r, s) for (d, r), s in zip(decisions, statuses, strict=True)]


def assert_refused(project, gw: ToolGateway, calls: list[Any], tool: str, params: Any,  # type: ignore[no-untyped-def]
                   match: str | None = None, rule: str = "invalid_params") -> None:
    before = len(recorded(project))
    with pytest.raises(ToolBlocked, match=match):
        gw.read(tool, params)
    assert calls == [], "the tool ran"
    assert recorded(project)[before:] == [("deny", rule, "blocked")]


# -- parameters ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("params", [
    {"items": [1.0, NAN]},
    {"items": [INF]},
    {"items": [-INF, 2.0]},
    {"inner": {"x": NAN}},
    {"inners": [{"x": 1.0}, {"x": INF}]},
    {"value": 1, "inner": {"x": 1.0, "tags": [NAN]}},   # a NaN where a string belongs, still refused as NaN
    {"items": [Decimal("NaN")]},
    {"items": [Decimal("Infinity")]},
])
def test_nan_and_infinity_at_any_depth_are_refused_and_the_tool_does_not_run(project, params):
    calls: list[Any] = []
    gw = make(project, calls)
    assert_refused(project, gw, calls, "tree", params, match="finite")


def test_nan_inside_a_model_instance_is_refused(project):
    calls: list[Any] = []
    gw = make(project, calls)
    assert_refused(project, gw, calls, "tree", Tree(inner=Inner(x=NAN)), match="finite")
    assert_refused(project, gw, calls, "tree", Tree(items=[1.0, INF]), match="finite")


@pytest.mark.parametrize("params", [{"value": 10**5000}, {"value": -(2**63) - 1}, {"inner": {"x": 2**64}},
                                    {"items": [1.0], "inners": [{"x": 10**30}]}])
def test_integers_outside_64_bits_are_refused_and_recorded(project, params):
    """10**5000 cannot even be printed (str() stops at 4,300 digits): refused, recorded, never a ValueError."""
    calls: list[Any] = []
    assert_refused(project, make(project, calls), calls, "tree", params, match="outside the 64-bit range")


def test_finite_values_in_range_pass(project):
    calls: list[Any] = []
    gw = make(project, calls)
    assert gw.read("tree", {"items": [0.0, 99.5], "inner": {"x": 1e300}}) == {"ok": True}
    assert len(calls) == 1


@pytest.mark.parametrize("params", [
    {1: "x"},
    {"value": 1, 2: 3},
    {None: 1},
    {("a", "b"): 1},
    {"inner": {"x": 1.0, 7: "y"}},
    {"inners": [{"x": 1.0}, {3.5: 1}]},
])
def test_non_string_keys_are_refused_never_a_type_error(project, params):
    calls: list[Any] = []
    gw = make(project, calls)
    assert_refused(project, gw, calls, "tree", params, match="not a string")


@pytest.mark.parametrize("params", [
    {"inner": {"x": 1.0, "admin": True}},
    {"inners": [{"x": 1.0}, {"x": 2.0, "sql": "DROP"}]},
    {"value": 1, "extra": 2},
])
def test_unknown_nested_keys_are_refused(project, params):
    calls: list[Any] = []
    gw = make(project, calls)
    assert_refused(project, gw, calls, "tree", params, match="unknown")


def test_self_referencing_and_absurdly_deep_trees_are_refused(project):
    calls: list[Any] = []
    gw = make(project, calls)
    loop: list[Any] = [1.0]
    loop.append(loop)
    assert_refused(project, gw, calls, "tree", {"items": loop}, match="deeper|values")
    deep: Any = 1.0
    for _ in range(5000):
        deep = [deep]
    assert_refused(project, gw, calls, "tree", {"items": deep}, match="deeper")


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: all@evil.io", "Hi\nthere", "Hi\rthere", "a\x00b", "a\x1bb",
                                     "a\x7fb", "a\u2028b"])
def test_control_characters_in_a_subject_are_refused(project, subject):
    calls: list[Any] = []
    gw = make(project, calls)
    assert_refused(project, gw, calls, "mail", {"to": "a@example.com", "subject": subject},
                   match="control character", rule="param_constraint")


def test_a_body_marked_multiline_keeps_its_line_breaks_but_not_other_controls(project):
    calls: list[Any] = []
    gw = make(project, calls)
    body = "Hello,\r\n\r\nthe invoice is attached.\n\tThanks"
    assert gw.read("mail", {"to": "a@example.com", "subject": "Invoice\tMarch", "body": body}) == {"ok": True}
    assert calls[0].body == body
    calls.clear()
    for bad in ("a\x00b", "a\x1b[31mred"):
        assert_refused(project, gw, calls, "mail", {"to": "a@example.com", "subject": "s", "body": bad},
                       match="control character", rule="param_constraint")


def test_allow_control_allows_controls_except_nul():
    c = Constraint(allow_control=True)
    assert c.control_problem("a\x1b[0m\r\n") is None
    assert c.control_problem("a\x00") is not None
    assert Constraint(multiline=True).control_problem("a\x1b") is not None
    assert Constraint().control_problem({"k\n": "v"}) is not None      # keys are strings too


def test_a_constraint_on_an_optional_parameter_applies_only_when_present(project):
    calls: list[Any] = []
    gw = make(project, calls)
    assert gw.read("mail", {"to": "a@example.com", "subject": "s"}) == {"ok": True}                 # omitted
    assert gw.read("mail", {"to": "a@example.com", "subject": "s", "cc": None}) == {"ok": True}     # null
    assert gw.read("mail", {"to": "a@example.com", "subject": "t", "cc": "b@example.com"}) == {"ok": True}
    assert len(calls) == 3
    calls.clear()
    assert_refused(project, gw, calls, "mail", {"to": "a@example.com", "subject": "s", "cc": "b@evil.io"},
                   match="cc", rule="param_constraint")


def test_a_constraint_without_optional_still_requires_the_parameter():
    pack = PolicyPack.from_yaml(TOOLS_YAML.replace("optional: true", "optional: false"))
    assert pack.param_violations("mail", {"to": "a@example.com", "cc": None}) == ["cc: missing (constrained)"]
    # a constraint that only grants multiline never requires the parameter
    assert not any(v.startswith("body") for v in pack.param_violations("mail", {"to": "a@example.com"}))


@pytest.mark.parametrize("to", ["a@example.com", "partner@other.org", "vendor@supplier.net"])
def test_any_of_passes_on_either_alternative(project, to):
    calls: list[Any] = []
    gw = make(project, calls)
    assert gw.read("mail", {"to": to, "subject": "s"}) == {"ok": True}


@pytest.mark.parametrize("to", ["a@evil.io", "partner@other.org.evil.io", "a@example.com@evil.io", ""])
def test_any_of_refuses_when_no_alternative_passes(project, to):
    calls: list[Any] = []
    gw = make(project, calls)
    assert_refused(project, gw, calls, "mail", {"to": to, "subject": "s"}, match="any_of", rule="param_constraint")


def test_any_of_checks_each_item_of_a_list():
    c = Constraint(any_of=(Constraint(email_domains=("example.com",)), Constraint(one_of=("x@other.org",))))
    assert c.violations(["a@example.com", "x@other.org"]) == []
    assert len(c.violations(["a@example.com", "y@other.org"])) == 1


# -- policy packs ---------------------------------------------------------------------------------------
BASE = """
workflow: w
version: "1"
allowed_tools: [pay]
"""

ALIAS_BOMB = BASE + """
lol1: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
lol2: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
lol3: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
lol4: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
lol5: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
lol6: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
lol7: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
lol8: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
lol9: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def _nested_mapping(levels: int) -> str:
    return BASE + "".join("  " * i + f"k{i}:\n" for i in range(levels)) + "  " * levels + "v: 1\n"


@pytest.mark.parametrize("text, message", [
    (ALIAS_BOMB, "aliases"),
    (BASE + "constraints: {pay: {amount: &x {max: 5}, other: *x}}\n", "aliases"),
    (BASE + "constraints: {pay: {amount: {max: 5}}}\nhigh_impact_tools: &t [pay]\n", "aliases"),
    (BASE + "x: " + "[" * 30_000 + "]" * 30_000 + "\n", "nested deeper|flow level"),
    (BASE + "x: " + "{a: " * 5_000 + "1" + "}" * 5_000 + "\n", "nested deeper"),
    (_nested_mapping(100), "nested deeper"),
    (BASE + "constraints: {pay: {amount: {max: .nan}}}\n", "finite|nan"),
    (BASE + "constraints: {pay: {amount: {min: -.inf}}}\n", "finite|inf"),
    (BASE + "constraints: {pay: {amount: {any_of: [{max: .inf}]}}}\n", "finite|inf"),
    (BASE + "constraints: {pay: {amount: {max: 'nan'}}}\n", "finite|nan"),
    (BASE + "constraints: {pay: {amount: {one_of: [1, .nan]}}}\n", "finite"),
    (BASE + "constraints: {pay: {amount: {max: 1e400}}}\n", "finite|inf"),
    (BASE + "approval: {second_approval: {fact: amount, value: .nan}}\n", "finite|nan"),
    (BASE + "approval: {ttl_hours: .inf}\n", "finite|inf"),
    (BASE + "rules: [{name: r, fact: f, op: gt, value: .nan, decision: deny, reason: x}]\n", "finite"),
    (BASE + "budgets: {max_cost_usd: .nan}\n", "finite|nan"),
    (BASE + "budgets: {max_wall_s: .inf}\n", "finite|inf"),
    (BASE + "recovery: {backoff_s: .nan}\n", "finite|nan"),
    (BASE + "recovery: {max_backoff_s: .inf}\n", "finite|inf"),
    (BASE + "input_ttl_hours: .inf\n", "finite|inf"),
    (BASE + "preconditions: {record_state: {x: .nan}}\n", "finite"),
    (BASE + "approval: {approvers: {1: [admin]}}\n", "not a string"),
    (BASE + "constraints: {pay: {amount: {any_of: []}}}\n", "any_of"),
    (BASE + "constraints: {pay: {amount: {any_of: [{optional: true}]}}}\n", "any_of"),
    (BASE + "constraints: {pay: {amount: {any_of: [5]}}}\n", "any_of"),
    (BASE + "constraints: {pay: {amount: {max: 9" + "9" * 5000 + "}}}\n", None),
    (BASE + "version: 2020-02-30\n", "day is out of range"),       # a timestamp the constructor rejects
    (BASE + "x: !!python/object/apply:os.system ['true']\n", None),
    (BASE + "x: !!binary '@@@'\n", None),
    ("- just\n- a list\n", None),
    ("\x00", None),
    ("a" * 300_000, "larger"),
])
@pytest.mark.parametrize("libyaml", [True, False], ids=["libyaml", "pure-python"])
def test_a_hostile_pack_raises_policy_error_fast(monkeypatch, text, message, libyaml):
    monkeypatch.setattr(yaml, "__with_libyaml__", libyaml and yaml.__with_libyaml__)
    times = []
    for _ in range(3):  # the best of three: a one-off stall (a GC pass, a cache miss) is not the pack's cost
        started = time.thread_time()  # CPU time of this thread: a loaded CI machine stretches wall time only
        with pytest.raises(PolicyError, match=message) as info:
            PolicyPack.from_yaml(text)
        times.append(time.thread_time() - started)
        assert type(info.value) is PolicyError
    assert min(times) < 0.1, f"took {min(times):.3f}s of CPU at best"


def test_the_shipped_kinds_of_settings_still_load():
    pack = PolicyPack.from_yaml(TOOLS_YAML)
    assert pack.constraints["mail"]["cc"].optional and pack.constraints["mail"]["body"].multiline
    assert len(pack.constraints["mail"]["to"].any_of or ()) == 2
    assert len(pack.digest) == 64


# -- properties -----------------------------------------------------------------------------------------
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from([NAN, INF, -INF, "\r\n", "\x00", "1e309", "NaN", Decimal("NaN"), Decimal("1.5")]),
)
_keys = st.one_of(st.sampled_from(["value", "items", "inner", "inners", "label", "x", "tags", "extra"]),
                  st.text(max_size=6), st.integers(), st.none(), st.floats(allow_nan=True), st.booleans())
_trees = st.recursive(_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(_keys, kids, max_size=4)), max_leaves=20)
_params = st.one_of(
    st.fixed_dictionaries({}, optional={
        "value": _trees, "items": st.one_of(_trees, st.lists(_scalars, max_size=4)),
        "inner": st.one_of(_trees, st.fixed_dictionaries({"x": _scalars}, optional={"tags": _trees, "zz": _trees})),
        "inners": st.lists(st.fixed_dictionaries({"x": _scalars}), max_size=3),
        "label": _scalars}),
    st.dictionaries(_keys, _trees, max_size=5),
    _trees,
)


@settings(deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(params=_params, tool=st.sampled_from(["tree", "mail"]))
def test_random_parameter_trees_give_a_result_or_tool_blocked_only(project, params, tool):
    calls: list[Any] = []
    gw = make(project, calls, run_id=f"run-{uuid.uuid4().hex[:12]}")   # a fresh run: no budget carry-over
    try:
        result = gw.read(tool, params)
    except ToolBlocked:
        assert calls == []
        return
    assert result == {"ok": True} and len(calls) == 1
    seen = calls[0].model_dump()
    stack: list[Any] = [seen]
    while stack:                                                        # what ran holds only finite numbers
        v = stack.pop()
        assert not (isinstance(v, float) and not math.isfinite(v))
        stack.extend(v.values() if isinstance(v, dict) else v if isinstance(v, list) else ())


_yamlish = st.lists(st.sampled_from(list("&*[]{}:-!|>'\"#%@`,? \n\t\\") + [
    "a", "1", ".nan", ".inf", "workflow", "allowed_tools", "constraints", "max", "<<", "!!binary", "!!set", "---",
    "0x", "2020-02-30", "\x00", "\ufeff", "pay", "  ", "- "]), max_size=60).map("".join)


@settings(deadline=None, database=None)
@given(text=st.one_of(st.text(max_size=200), _yamlish, _yamlish.map(lambda t: BASE + t),
                      _yamlish.map(lambda t: BASE + "constraints:\n  pay:\n    amount: " + t)))
def test_random_yamlish_texts_give_a_pack_or_policy_error_only(text):
    try:
        pack = PolicyPack.from_yaml(text)
    except PolicyError:
        return
    assert isinstance(pack, PolicyPack)


_pack_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                          st.text(max_size=8), st.sampled_from(["pay", "deny", "gt", "w", "1"]))
_pack_keys = st.sampled_from(["workflow", "version", "allowed_tools", "constraints", "pay", "amount", "max", "min",
                              "one_of", "any_of", "optional", "multiline", "budgets", "max_cost_usd", "approval",
                              "second_approval", "fact", "value", "rules", "recovery", "backoff_s", "x"])
_pack_trees = st.recursive(_pack_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.dictionaries(st.one_of(_pack_keys, st.integers()), kids, max_size=4)),
    max_leaves=25)


@settings(deadline=None, database=None)
@given(extra=st.dictionaries(_pack_keys, _pack_trees, max_size=4), dump=st.sampled_from(["yaml", "flow", "base"]))
def test_random_pack_structures_give_a_pack_or_policy_error_only(extra, dump):
    data: dict[Any, Any] = {"workflow": "w", "version": "1", "allowed_tools": ["pay"]} if dump == "base" else {}
    data.update(extra)
    text = yaml.safe_dump(data, default_flow_style=(dump == "flow"))
    try:
        pack = PolicyPack.from_yaml(text)
    except PolicyError:
        return
    assert isinstance(pack, PolicyPack) and len(pack.digest) == 64
