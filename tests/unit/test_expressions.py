"""Expressions and placeholders: what partners can write, what is refused, and how null behaves."""

from __future__ import annotations

import pytest

from core.expressions import ExpressionError, compile_expression, render

NAMES = {
    "trigger": {"amount": 1500, "currency": "USD", "vendor": "Acme Ltd", "tags": ["a", "b"], "none": None,
                "nested": {"list": [{"x": 1}]}},
    "steps": {"fetch_po": {"po_amount": 900, "po_status": "open"}},
    "response": {"status": 200, "body": {"ok": True}},
    "now": 1_767_225_600.0,
}
ROOTS = frozenset({"trigger", "steps", "instance"})


def ev(source: str, names=NAMES):
    return compile_expression(source).evaluate(names)


@pytest.mark.parametrize(("source", "expected"), [
    ("trigger.amount <= 1000", False),
    ("trigger.amount > 1000", True),
    ("trigger.amount == 1500 and trigger.currency != 'EUR'", True),
    ("trigger.amount >= 1500 >= 1000", True),
    ("response.status == 200", True),
    ("steps.fetch_po.po_amount < trigger.amount", True),
    ("not trigger.none", True),
    ("trigger.amount < 10 or trigger.currency == 'USD'", True),
    ("trigger.amount * 2 - 1000", 2000),
    ("trigger.amount / 2", 750.0),
    ("trigger.amount // 7", 214),
    ("trigger.amount % 7", 2),
    ("-trigger.amount", -1500),
    ("trigger.currency in ['USD', 'EUR']", True),
    ("'c' not in trigger.tags", True),
    ("'Acme' in trigger.vendor", True),
    ("trigger.nested.list[0].x", 1),
    ("trigger['currency']", "USD"),
    ("'big' if trigger.amount > 1000 else 'small'", "big"),
    ("true and not false", True),
    ("null == null", True),
    ("response.body.ok == true", True),
])
def test_comparisons_logic_arithmetic_and_membership(source, expected):
    assert ev(source) == expected


@pytest.mark.parametrize(("source", "expected"), [
    ("trigger.missing", None),
    ("trigger.missing.deeper.still", None),
    ("trigger.none <= 1000", False),
    ("trigger.none > 1000", False),
    ("trigger.none == null", True),
    ("trigger.none + 1", None),
    ("-trigger.none", None),
    ("'x' in trigger.none", False),
    ("trigger.tags[9]", None),
    ("trigger.amount.value", None),
    ("trigger.amount < 'text'", False),
])
def test_null_safety(source, expected):
    assert ev(source) == expected


@pytest.mark.parametrize(("source", "expected"), [
    ("len(trigger.tags)", 2),
    ("len(trigger.none)", 0),
    ("lower(trigger.vendor)", "acme ltd"),
    ("upper(trigger.currency)", "USD"),
    ("lower(trigger.none)", None),
    ("abs(-3)", 3),
    ("min(3, 1, 2)", 1),
    ("max(trigger.amount, 2000)", 2000),
    ("round(2.567, 2)", 2.57),
    ("int('42')", 42),
    ("float(trigger.amount)", 1500.0),
    ("str(trigger.amount)", "1500"),
    ("contains(trigger.tags, 'a')", True),
    ("starts_with(trigger.vendor, 'Acme')", True),
    ("ends_with(trigger.vendor, 'Ltd')", True),
    ("exists(trigger.none)", False),
    ("exists(trigger.amount)", True),
    ("coalesce(trigger.none, trigger.missing, 7)", 7),
])
def test_functions(source, expected):
    assert ev(source) == expected


@pytest.mark.parametrize(("source", "message"), [
    ("trigger.__class__", "names starting with '_' are not allowed"),
    ("trigger._private", "names starting with '_' are not allowed"),
    ("open('/etc/passwd')", "calls open(), which is not one of"),
    ("__import__('os')", "calls __import__()"),
    ("trigger.vendor.upper()", "calls trigger.vendor.upper()"),
    ("lower(x=1)", "keyword arguments are not allowed"),
    ("lambda: 1", "uses Lambda"),
    ("[x for x in trigger.tags]", "uses ListComp"),
    ("{x: 1 for x in trigger.tags}", "uses DictComp"),
    ("(y := 1)", "uses NamedExpr"),
    ("x = 1", "not a valid expression"),
    ("2 ** 1000", "uses Pow"),
    ("{'a': 1}", "uses Dict"),
    ("f'{trigger}'", "uses JoinedStr"),
    ("os.system", "refers to 'os'"),
    ("secrets.key", "refers to 'secrets'"),
    ("", "non-empty string"),
    ("1 + " * 700 + "1", "longer than 2000 characters"),
    ("-" * 60 + "1", "nested more than 50 levels deep"),
])
def test_unsafe_or_invalid_code_is_refused_at_compile_time(source, message):
    with pytest.raises(ExpressionError, match=None) as info:
        compile_expression(source)
    assert message in str(info.value)


def test_failures_while_evaluating_are_expression_errors():
    with pytest.raises(ExpressionError, match="division by zero"):
        ev("trigger.amount / 0")
    with pytest.raises(ExpressionError):
        ev("len(trigger.amount)")


def test_repeating_a_string_past_a_sane_length_is_refused():
    with pytest.raises(ExpressionError, match="exceed"):
        ev("trigger.vendor * 100000000")
    assert ev("trigger.currency * 2") == "USDUSD"


def test_an_expression_records_the_roots_it_reads():
    assert compile_expression("trigger.a > steps.b.c and len(trigger.d) > 0").roots == {"trigger", "steps"}


class TestPlaceholders:
    def test_a_whole_string_placeholder_keeps_the_value_type(self):
        assert render("{{trigger.amount}}", NAMES, ROOTS) == 1500
        assert render("{{ trigger.tags }}", NAMES, ROOTS) == ["a", "b"]
        assert render("{{trigger.missing}}", NAMES, ROOTS) is None

    def test_placeholders_inside_text_are_formatted(self):
        text = "{{trigger.vendor}}: {{trigger.amount}} {{trigger.none}}|{{steps.fetch_po.po_status}}"
        assert render(text, NAMES, ROOTS) == "Acme Ltd: 1500 |open"
        assert render("{{trigger.flag}} {{trigger.ratio}}", {"trigger": {"flag": True, "ratio": 2.0}}, ROOTS) == \
            "true 2"

    def test_secrets_and_other_handler_placeholders_are_left_untouched(self):
        value = {"Authorization": "Bearer {{secrets.erp_api_key}}", "url": "{{payos.webhook_url}}/x/{{trigger.amount}}",
                 "list": ["{{tenant.webhook_url}}", 3]}
        assert render(value, NAMES, ROOTS) == {"Authorization": "Bearer {{secrets.erp_api_key}}",
                                               "url": "{{payos.webhook_url}}/x/1500",
                                               "list": ["{{tenant.webhook_url}}", 3]}

    def test_list_indexes_in_paths(self):
        assert render("{{trigger.tags.1}}", NAMES, ROOTS) == "b"
        assert render("{{trigger.tags.7}}", NAMES, ROOTS) is None
