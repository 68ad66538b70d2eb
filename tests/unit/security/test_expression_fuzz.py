"""Expression fuzzer: generated expressions over generated data, bounded by the cost budget.

Every source either compiles or is refused with ExpressionError; every compiled expression either yields a
value or raises ExpressionError (never anything else, which would escape the sandbox into the engine); no
evaluation visits more than MAX_STEPS nodes or builds a string, list or integer over the budget.
"""

from __future__ import annotations

import ast
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.expressions import MAX_INT_BITS, MAX_SEQUENCE_LENGTH, MAX_STEPS, ExpressionError, compile_expression

LEAVES = st.one_of(
    st.integers(-10**6, 10**6).map(str),
    st.sampled_from(['"abc"', "'%s'", '"%(x)s"', '"%0400000000d"', '"{{secrets.k}}"', "true", "null", "1.5",
                     "[1, 2, 3]", "trigger", "trigger.s", "trigger.n", "trigger.big", "trigger.l", "trigger.d",
                     "trigger.missing.deeper", "steps.a.b", "now", "instance.id", '"x" * 99999', "10**9"]),
)
BINARY = ["+", "-", "*", "/", "//", "%", "==", "!=", "<", "<=", ">", ">=", "and", "or", "in", "not in"]
FUNCTIONS = ["len", "lower", "upper", "abs", "min", "max", "round", "int", "float", "str", "contains",
             "starts_with", "ends_with", "exists", "coalesce", "__import__", "getattr", "open"]


def _grow(children):
    return st.one_of(
        st.tuples(children, st.sampled_from(BINARY), children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["not ", "-", "+"]), children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(st.sampled_from(FUNCTIONS), st.lists(children, min_size=1, max_size=3)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"),
        st.tuples(children, children).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(children, st.sampled_from(["s", "l", "__class__", "x"])).map(lambda t: f"{t[0]}.{t[1]}"),
        st.tuples(children, children, children).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
    )


SOURCES = st.recursive(LEAVES, _grow, max_leaves=25)
DATA = st.fixed_dictionaries({
    "s": st.text(max_size=50) | st.just("%(x)s%0999999d"),
    "n": st.integers(-10**9, 10**9) | st.floats(allow_nan=True, allow_infinity=True),
    "big": st.just(10**1000) | st.just("9" * 5000),
    "l": st.lists(st.integers() | st.text(max_size=5), max_size=20),
    "d": st.dictionaries(st.text(max_size=5), st.integers(), max_size=5),
})


def _within_budget(value) -> bool:
    if isinstance(value, str | list | tuple):
        return len(value) <= MAX_SEQUENCE_LENGTH
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() <= MAX_INT_BITS + 64
    return True


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=SOURCES, data=DATA)
def test_no_expression_escapes_the_sandbox_or_the_budget(source, data):
    try:
        expression = compile_expression(source)
    except ExpressionError:
        return
    names = {"trigger": data, "steps": {"a": {"b": 1}}, "instance": {"id": "wfi_1"}, "now": 1.0}
    tracemalloc.start()
    try:
        value = expression.evaluate(names)
    except ExpressionError:
        value = None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert sum(1 for _ in ast.walk(expression.tree)) <= MAX_STEPS  # no loops: the most steps it can take
    assert _within_budget(value), (source, type(value))
    assert peak < 16 * 1024 * 1024, (source, peak)  # one evaluation never allocates more than 16 MB


@settings(max_examples=200, deadline=None)
@given(width=st.integers(0, 10**9), spec=st.sampled_from("dsfxrc"))
def test_no_string_formatting_width_gets_past_validation(width, spec):
    source = f'len("%0{width}{spec}" % 1) > 0'
    try:
        compile_expression(source)
    except ExpressionError as exc:
        assert "formats a string" in str(exc)
    else:
        raise AssertionError(f"{source} compiled")
