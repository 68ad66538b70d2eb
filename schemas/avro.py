"""Avro schemas derived from the core's dataclasses, so a message type has exactly one definition.

`avro_schema_for(cls)` reads the dataclass's fields and type hints; nothing here lists fields by hand, so
a field added to the core shows up in the schema on the next `python -m schemas.generate`.

Type mapping (the only types a message field may have; anything else raises `UnsupportedType`):

| Python                         | Avro                                   |
|--------------------------------|----------------------------------------|
| str / int / bool / float / bytes | string / long / boolean / double / bytes |
| StrEnum subclass               | string (not an Avro enum: a new member stays schema-compatible) |
| `Json` (core.types)            | string holding the JSON text           |
| `X | None`                     | ["null", X] (or [X, "null"] when the default is not None) |
| tuple[X, ...] / list[X]        | array of X                             |
| dict[str, X]                   | map of X                               |
| nested dataclass               | record, defined once per schema, then referenced by name |

A `Json` value comes back as JSON does: tuples become lists, dict keys strings.

Defaults: a field's dataclass default (or `default_factory()`) becomes its Avro default, written in the
Avro form of that type; for `Json` that is the JSON text of the default (`None` -> "null"), so a reader
that fills the default in decodes it back to the dataclass default. Fields without a default have none.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass
from enum import Enum, StrEnum
from functools import cache
from typing import Annotated, Any, Union

from core.types import JSON

NAMESPACE = "flowline"


class UnsupportedType(TypeError):
    """A dataclass field has a type with no Avro mapping here."""


# -- type nodes: the one interpretation of a type hint, shared by the schema generator and the codec --


@dataclass(frozen=True)
class Prim:
    avro: str  # "string", "long", "boolean", "double", "bytes"


@dataclass(frozen=True)
class EnumOf:
    cls: type[StrEnum]


@dataclass(frozen=True)
class JsonText:
    pass


@dataclass(frozen=True)
class Nullable:
    inner: Node


@dataclass(frozen=True)
class ArrayOf:
    items: Node
    container: type  # tuple or list: what decoding builds


@dataclass(frozen=True)
class MapOf:
    values: Node


@dataclass(frozen=True)
class RecordOf:
    cls: type


Node = Prim | EnumOf | JsonText | Nullable | ArrayOf | MapOf | RecordOf

_PRIMITIVES: dict[Any, str] = {str: "string", int: "long", bool: "boolean", float: "double", bytes: "bytes"}


def type_node(hint: Any, where: str = "") -> Node:
    """Interpret one type hint (`where` names the field, for error messages)."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        if any(m is JSON for m in hint.__metadata__):
            return JsonText()
        return type_node(hint.__origin__, where)
    if hint in _PRIMITIVES:
        return Prim(_PRIMITIVES[hint])
    if isinstance(hint, type) and issubclass(hint, Enum):
        if issubclass(hint, StrEnum):
            return EnumOf(hint)
        raise UnsupportedType(f"{where}: only StrEnum enums are supported, not {hint.__name__}")
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return RecordOf(hint)
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        others = [a for a in args if a is not type(None)]
        if len(others) == 1 and len(args) == 2:
            return Nullable(type_node(others[0], where))
        raise UnsupportedType(f"{where}: only `X | None` unions are supported, not {hint}")
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return ArrayOf(type_node(args[0], where), tuple)
        raise UnsupportedType(f"{where}: only variable-length tuple[X, ...] is supported, not {hint}")
    if origin is list:
        (item,) = typing.get_args(hint) or (None,)
        if item is None:
            raise UnsupportedType(f"{where}: list needs an item type")
        return ArrayOf(type_node(item, where), list)
    if origin is dict:
        key, value = typing.get_args(hint) or (None, None)
        if key is not str:
            raise UnsupportedType(f"{where}: only dict[str, X] is supported, not {hint}")
        return MapOf(type_node(value, where))
    raise UnsupportedType(f"{where}: no Avro mapping for {hint!r}")


@cache
def record_fields(cls: type) -> tuple[tuple[dataclasses.Field[Any], Node], ...]:
    """The serialized fields of a dataclass with their type nodes, in declaration order.

    Fields with `init=False` are derived by the class itself and are not serialized.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise UnsupportedType(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls, include_extras=True)
    return tuple(
        (f, type_node(hints[f.name], f"{cls.__qualname__}.{f.name}")) for f in dataclasses.fields(cls) if f.init
    )


def has_default(f: dataclasses.Field[Any]) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def default_value(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_JSON_DECODER = json.JSONDecoder()


def dumps_json(value: Any) -> str:
    """The JSON text stored for a `Json` field: compact, key order kept, NaN/Infinity refused.

    One encoder built once (`json.dumps` with options builds one per call); `None`, the commonest value,
    skips it.
    """
    return "null" if value is None else _JSON_ENCODER.encode(value)


def loads_json(text: str) -> Any:
    return None if text == "null" else _JSON_DECODER.decode(text)


def avro_value(node: Node, value: Any) -> Any:
    """A Python value in the JSON form Avro uses for defaults (slow path: schema generation only)."""
    if isinstance(node, Prim):
        return value.decode("latin-1") if node.avro == "bytes" else value
    if isinstance(node, EnumOf):
        return str(node.cls(value).value)
    if isinstance(node, JsonText):
        return dumps_json(value)
    if isinstance(node, Nullable):
        return None if value is None else avro_value(node.inner, value)
    if isinstance(node, ArrayOf):
        return [avro_value(node.items, v) for v in value]
    if isinstance(node, MapOf):
        return {k: avro_value(node.values, v) for k, v in value.items()}
    return {f.name: avro_value(n, getattr(value, f.name)) for f, n in record_fields(node.cls)}


def doc_line(cls: type) -> str:
    """First line of the class docstring; "" when the class has none (dataclass's generated signature)."""
    doc = cls.__doc__ or ""
    if not doc or doc.startswith(f"{cls.__name__}("):
        return ""
    return doc.strip().splitlines()[0].strip()


def snake_case(name: str) -> str:
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


class _SchemaBuilder:
    def __init__(self, namespace: str):
        self.namespace = namespace
        self.defined: dict[str, type] = {}

    def record(self, cls: type, top: bool = False) -> dict[str, Any] | str:
        name = cls.__name__
        if name in self.defined:
            if self.defined[name] is not cls:
                raise UnsupportedType(
                    f"two different classes named {name} in one schema: {self.defined[name]!r} and {cls!r}"
                )
            return name
        self.defined[name] = cls
        schema: dict[str, Any] = {"type": "record", "name": name}
        if top:
            schema["namespace"] = self.namespace
        doc = doc_line(cls)
        if doc:
            schema["doc"] = doc
        schema["fields"] = [self.field(f, node) for f, node in record_fields(cls)]
        return schema

    def field(self, f: dataclasses.Field[Any], node: Node) -> dict[str, Any]:
        default = default_value(f) if has_default(f) else dataclasses.MISSING
        if isinstance(node, Nullable):
            inner = self.type(node.inner)
            # an Avro union's default must match its first branch
            avro_type: Any = ["null", inner] if default is None or default is dataclasses.MISSING else [inner, "null"]
        else:
            avro_type = self.type(node)
        out: dict[str, Any] = {"name": f.name, "type": avro_type}
        if default is not dataclasses.MISSING:
            out["default"] = avro_value(node, default)
        return out

    def type(self, node: Node) -> Any:
        if isinstance(node, Prim):
            return node.avro
        if isinstance(node, EnumOf | JsonText):
            return "string"
        if isinstance(node, Nullable):
            return ["null", self.type(node.inner)]
        if isinstance(node, ArrayOf):
            return {"type": "array", "items": self.type(node.items)}
        if isinstance(node, MapOf):
            return {"type": "map", "values": self.type(node.values)}
        return self.record(node.cls)


def avro_schema_for(cls: type, namespace: str = NAMESPACE) -> dict[str, Any]:
    """The Avro record schema of a dataclass (a fresh dict: callers may keep or change it)."""
    schema = _SchemaBuilder(namespace).record(cls, top=True)
    assert isinstance(schema, dict)
    return schema
