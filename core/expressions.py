"""Safe expressions and `{{...}}` placeholders, compiled once per template version.

Expressions use Python's expression syntax evaluated by `simpleeval` (no `eval`, no attribute access
beyond JSON data, no imports, no assignment): `trigger.amount <= 1000`, `response.status == 200`,
`steps.fetch_po.po_amount > 0 and trigger.currency in ["USD", "EUR"]`. We parse once with `ast` at compile
time, reject anything outside a small grammar with a message a partner can act on, and evaluate the
stored tree for every record.

Null-safety: a missing key or a path through `null` yields `null`; ordering comparisons with `null` are
false (`null <= 1000` is false, `null == null` is true). `true`, `false` and `null` are accepted as in
JSON. Functions: len, lower, upper, abs, min, max, round, int, float, str, contains, starts_with,
ends_with, exists (is not null), coalesce.

simpleeval is a pure-Python, single-module library with no I/O: the only third-party import of the core
(see docs/adr/0003-expressions-with-simpleeval.md).
"""

from __future__ import annotations

import ast
import operator as op
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import simpleeval

ALLOWED_ROOTS = frozenset({"trigger", "steps", "response", "instance", "now", "context"})
JSON_CONSTANTS = {"true": True, "false": False, "null": None}
MAX_DEPTH = 50  # nesting of the syntax tree; the evaluator recurses once (or more) per level
MAX_SEQUENCE_LENGTH = 100_000  # longest string or list an operator may build (repetition, concatenation)
MAX_INT_BITS = 4096  # largest integer an operator may build (about 1,233 digits)
MAX_STEPS = 4_000  # syntax nodes an expression may have (2,000 characters make fewer); no loops: also its steps
MAX_ERROR_CHARS = 500  # an error message carries at most this much of a value into events and logs

# The cost budget of one evaluation (docs/security.md, "Expressions"): every operator's result is bounded in
# size (MAX_SEQUENCE_LENGTH, MAX_INT_BITS), every evaluation in steps (MAX_STEPS: checked once at compile
# time, since no node of the grammar repeats, so evaluating costs nothing extra), and the `%` formatting
# of strings (widths like "%0400000000d", names looked up in a mapping) is refused, at validation when the
# left operand is a literal, at evaluation otherwise. Deterministic (no clock): the same expression and
# data always cost the same, so a replayed decision decides the same.


class ExpressionError(ValueError):
    """An expression that does not compile, or failed while evaluating."""


def _null_safe(compare):
    def compare_or_false(a: Any, b: Any) -> bool:
        if a is None or b is None:
            return False
        try:
            return compare(a, b)
        except TypeError:
            return False

    return compare_or_false


def _contains(container: Any, item: Any) -> bool:
    if container is None:
        return False
    try:
        return item in container
    except TypeError:
        return False


def _not_in(item: Any, container: Any) -> bool:
    return not _contains(container, item)


def _bounded(result: Any) -> Any:
    if isinstance(result, str | list | tuple) and len(result) > MAX_SEQUENCE_LENGTH:
        raise ValueError(f"the result would exceed {MAX_SEQUENCE_LENGTH} items")
    if isinstance(result, int) and not isinstance(result, bool) and result.bit_length() > MAX_INT_BITS:
        raise ValueError(f"the result would exceed {MAX_INT_BITS} bits")
    return result


def _multiply(a: Any, b: Any) -> Any:
    # "x" * 10**9 would build a gigabyte inside the engine: refuse repetitions past a sane length first
    for seq, times in ((a, b), (b, a)):
        if isinstance(seq, str | list | tuple) and isinstance(times, int) and len(seq) * times > MAX_SEQUENCE_LENGTH:
            raise ValueError(f"repeating a sequence would exceed {MAX_SEQUENCE_LENGTH} items")
    if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_INT_BITS + 1:
        raise ValueError(f"the result would exceed {MAX_INT_BITS} bits")
    return a * b


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, str | list | tuple) and isinstance(b, str | list | tuple) \
            and len(a) + len(b) > MAX_SEQUENCE_LENGTH:
        raise ValueError(f"the result would exceed {MAX_SEQUENCE_LENGTH} items")
    return _bounded(a + b)


def _modulo(a: Any, b: Any) -> Any:
    if isinstance(a, str | bytes):
        # "%0400000000d" % 1 allocates 400 MB; "%(x)s" % trigger reaches into a mapping: no string formatting
        raise ValueError("the % operator formats strings, which expressions do not allow")
    return _bounded(a % b)


def _arith(fn):
    def null_propagating(a: Any, b: Any) -> Any:
        if a is None or b is None:
            return None
        return fn(a, b)

    return null_propagating


_OPERATORS = {
    ast.Add: _arith(_add),
    ast.Sub: _arith(lambda a, b: _bounded(a - b)),
    ast.Mult: _arith(_multiply),
    ast.Div: _arith(op.truediv),
    ast.FloorDiv: _arith(op.floordiv),
    ast.Mod: _arith(_modulo),
    ast.Eq: op.eq,
    ast.NotEq: op.ne,
    ast.Gt: _null_safe(op.gt),
    ast.Lt: _null_safe(op.lt),
    ast.GtE: _null_safe(op.ge),
    ast.LtE: _null_safe(op.le),
    ast.Not: op.not_,
    ast.USub: lambda a: None if a is None else -a,
    ast.UAdd: lambda a: a,
    ast.In: lambda a, b: _contains(b, a),
    ast.NotIn: _not_in,
}


def _str_fn(fn):
    return lambda s, *args: None if s is None else fn(str(s), *args)


_FUNCTIONS = {
    "len": lambda x: 0 if x is None else len(x),
    "lower": _str_fn(str.lower),
    "upper": _str_fn(str.upper),
    "abs": lambda x: None if x is None else abs(x),
    "min": min,
    "max": max,
    "round": lambda x, n=0: None if x is None else round(x, n),
    "int": lambda x: None if x is None else int(x),
    "float": lambda x: None if x is None else float(x),
    "str": lambda x: "" if x is None else str(x),
    "contains": _contains,
    "starts_with": _str_fn(str.startswith),
    "ends_with": _str_fn(str.endswith),
    "exists": lambda x: x is not None,
    "coalesce": lambda *xs: next((x for x in xs if x is not None), None),
}

_ALLOWED_NODES = (
    ast.Expression, ast.Expr, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
    ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Compare, ast.Eq, ast.NotEq,
    ast.Gt, ast.Lt, ast.GtE, ast.LtE, ast.In, ast.NotIn, ast.Name, ast.Load, ast.Attribute, ast.Subscript,
    ast.Constant, ast.List, ast.Tuple, ast.Call, ast.IfExp,
)


class _JsonEvaluator(simpleeval.EvalWithCompoundTypes):
    """simpleeval over JSON data: missing keys and paths through null are null, not errors."""

    def __init__(self) -> None:
        super().__init__(operators=dict(_OPERATORS), functions=dict(_FUNCTIONS), names={})

    def _check_disallowed_items(self, item: Any) -> None:
        # Values come from decoded JSON (no callables or modules can hide inside); only a function
        # object could be unsafe, and the function table is ours.
        return None

    def _eval_name(self, node: ast.Name) -> Any:
        names = self.names
        if node.id in names:
            return names[node.id]
        if node.id in JSON_CONSTANTS:
            return JSON_CONSTANTS[node.id]
        if node.id in self.functions:
            return self.functions[node.id]
        return None

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        base = self._eval(node.value)
        if isinstance(base, Mapping):
            return base.get(node.attr)
        return None

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        base = self._eval(node.value)
        key = self._eval(node.slice)
        if base is None:
            return None
        try:
            return base[key]
        except (KeyError, IndexError, TypeError):
            return None

    def _eval_boolop(self, node: ast.BoolOp) -> Any:
        if isinstance(node.op, ast.And):
            result: Any = True
            for value in node.values:
                result = self._eval(value)
                if not result:
                    return result
            return result
        result = False
        for value in node.values:
            result = self._eval(value)
            if result:
                return result
        return result


@dataclass(frozen=True)
class Expression:
    source: str
    tree: ast.AST = field(repr=False, compare=False)
    roots: frozenset[str] = frozenset()

    def evaluate(self, names: Mapping[str, Any]) -> Any:
        """The value, or ExpressionError: nothing else ever escapes (an error fails the step, not the engine)."""
        evaluator = _EVALUATOR
        evaluator.names = names
        try:
            return evaluator._eval(self.tree)
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}" if isinstance(exc, LookupError | AttributeError) else str(exc)
            raise ExpressionError(_clip(f"{self.source!r} failed: {detail}")) from None
        finally:
            evaluator.names = {}

    def test(self, names: Mapping[str, Any]) -> bool:
        return bool(self.evaluate(names))


_EVALUATOR = _JsonEvaluator()


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + f"... ({len(text)} characters)"


def compile_expression(source: str, *, roots: frozenset[str] = ALLOWED_ROOTS) -> Expression:
    """Parse and check an expression once; raises ExpressionError with a sentence that says what is wrong."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("expression must be a non-empty string")
    if len(source) > 2000:
        raise ExpressionError("expression is longer than 2000 characters")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"{source!r} is not a valid expression: {exc.msg} at column {exc.offset}") from None
    except (RecursionError, MemoryError):
        raise ExpressionError(f"{source!r} is nested too deeply") from None
    if _depth(tree) > MAX_DEPTH:
        raise ExpressionError(f"{source!r} is nested more than {MAX_DEPTH} levels deep")
    if sum(1 for _ in ast.walk(tree)) > MAX_STEPS:
        raise ExpressionError(f"{source!r} has more than {MAX_STEPS} parts")
    used_roots: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise ExpressionError(f"{source!r} uses {type(node).__name__}, which expressions do not allow")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExpressionError(f"{source!r}: names starting with '_' are not allowed")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
                name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
                raise ExpressionError(
                    f"{source!r} calls {name}(), which is not one of: {', '.join(sorted(_FUNCTIONS))}"
                )
            if node.keywords:
                raise ExpressionError(f"{source!r}: keyword arguments are not allowed")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) \
                and isinstance(node.left.value, str):
            raise ExpressionError(f"{source!r} formats a string with %, which expressions do not allow")
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not _is_call_target(tree, node):
            if node.id in JSON_CONSTANTS:
                continue
            if node.id not in roots:
                raise ExpressionError(
                    f"{source!r} refers to {node.id!r}; expressions can use {', '.join(sorted(roots))}"
                )
            used_roots.add(node.id)
    return Expression(source=source, tree=tree.body, roots=frozenset(used_roots))


def _depth(tree: ast.AST) -> int:
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _is_call_target(tree: ast.AST, name: ast.Name) -> bool:
    return any(isinstance(n, ast.Call) and n.func is name for n in ast.walk(tree))


# ---------------------------------------------------------------------------------------------- placeholders

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_\-]+)*$")


def find_placeholders(text: str) -> list[str]:
    return [m.group(1) for m in _PLACEHOLDER.finditer(text)]


def check_placeholder(path: str) -> str | None:
    """None if `path` is a valid placeholder path, else the reason it is not."""
    if not _PATH.match(path):
        return f"'{{{{{path}}}}}' is not a dotted path such as {{{{trigger.id}}}}"
    return None


def lookup(names: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = names
    for part in path:
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


# How a value's own braces travel between the engine's pass and the handler's (see `render`).
LITERALS = {"{{lbrace}}": "{", "{{rbrace}}": "}"}
_ESCAPE_BRACES = str.maketrans({"{": "{{lbrace}}", "}": "{{rbrace}}"})


def render(value: Any, names: Mapping[str, Any], roots: frozenset[str], *, final: bool = False) -> Any:
    """Replace `{{path}}` placeholders whose root is in `roots` everywhere inside a JSON value.

    A string that is exactly one placeholder takes the value's own type (a number stays a number); inside
    longer text, values are formatted as strings and null as "". Placeholders of other roots (secrets,
    tenant, payos) are left as they are, for the handler that owns them.

    Values are data, never templates: only the template author's strings are parsed, once. A value that
    itself contains braces (a requester's `"memo": "{{secrets.erp_key}}"`, a partner's response, a callback
    body) must not become, alone or together with the author's neighbouring text, a placeholder in the
    handler's later pass. So the engine's pass (`final=False`) writes every brace inside a substituted value
    as `{{lbrace}}` / `{{rbrace}}`, and the handler's pass (`final=True`, the last one) turns those back
    into braces without parsing what it produced (one `re.sub` never rescans its own replacements).
    docs/security.md.
    """
    if isinstance(value, str):
        if "{{" not in value:
            return value
        whole = _PLACEHOLDER.fullmatch(value)
        if whole:
            path = tuple(whole.group(1).split("."))
            if path[0] in roots:
                found = lookup(names, path)
                return found if final else _protect(found)
            if final and whole.group(0) in LITERALS:
                return LITERALS[whole.group(0)]
            return value

        def substitute(match: re.Match[str]) -> str:
            if final and match.group(0) in LITERALS:
                return LITERALS[match.group(0)]
            path = tuple(match.group(1).split("."))
            if path[0] not in roots:
                return match.group(0)
            found = lookup(names, path)
            text = "" if found is None else _to_text(found)
            return text if final else _protect(text)

        return _PLACEHOLDER.sub(substitute, value)
    if isinstance(value, Mapping):
        return {k: render(v, names, roots, final=final) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, names, roots, final=final) for v in value]
    return value


def _protect(value: Any) -> Any:
    """A substituted value with every brace in its strings written as `{{lbrace}}`/`{{rbrace}}` (`render`)."""
    if isinstance(value, str):
        return value.translate(_ESCAPE_BRACES) if ("{" in value or "}" in value) else value
    if isinstance(value, Mapping):
        return {k: _protect(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_protect(v) for v in value]
    return value


def _to_text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def placeholders_in(value: Any) -> list[tuple[str, str]]:
    """Every placeholder in a JSON value, as (json pointer suffix, path)."""
    found: list[tuple[str, str]] = []

    def walk(v: Any, pointer: str) -> None:
        if isinstance(v, str):
            found.extend((pointer, p) for p in find_placeholders(v))
        elif isinstance(v, Mapping):
            for k, item in v.items():
                walk(item, f"{pointer}/{_escape(str(k))}")
        elif isinstance(v, list):
            for i, item in enumerate(v):
                walk(item, f"{pointer}/{i}")

    walk(value, "")
    return found


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")
