"""Avro binary bodies written and read by code generated per record type, straight from the dataclasses.

Why: fastavro's `schemaless_writer`/`schemaless_reader` walk a parsed schema for every record and take or
give dicts, so a record cost building a dict of dicts, fastavro's dispatch per field, and the dataclass from
the dicts again: 49 µs to encode and 48 µs to decode a 4-step `InstanceState`, which the engine does for
every step it decides (issue 15; docs/performance.md "The state codec"). The functions generated here do
exactly what the Avro specification says for the one schema they were generated from, field by field, on
the dataclass itself: a few times faster, and not a byte different (tests/unit/test_codec_binary.py checks
every record type against fastavro's bytes on generated values).

They know ONLY the current schema of each type. Records written with any other writer schema (an older
release under `schemas/history`, a newer one from a registry) still go through fastavro with Avro's
reader-schema resolution (schemas/codec.py).

What fastavro does with a value of the wrong type is kept where it matters: a float in a `long` is
truncated, anything truthy is `true`; a string where bytes belong, a non-string where a string belongs, an
int out of the 64-bit range or an unknown enum value raise.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

from schemas.avro import (
    ArrayOf,
    EnumOf,
    JsonText,
    MapOf,
    Node,
    Nullable,
    Prim,
    RecordOf,
    dumps_json,
    loads_json,
    record_fields,
)

_MIN_LONG, _MAX_LONG = -(2**63), 2**63 - 1


class InvalidValue(ValueError):
    """The body is well-formed Avro but a value is not one the dataclass takes (an enum or JSON text)."""


class CorruptBody(ValueError):
    """The body is not a valid Avro encoding of the schema (a bad union index, a negative length)."""


def zigzag_varint(n: int) -> bytes:
    """Avro's `long`: zig-zag, then 7 bits per byte, least significant group first."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# The encodings of longs already written: the small ones (lengths, counts, steps, attempts) always, and
# the last few thousand others (timestamps: a state carries the same created/started/fire times every time
# it is written, and a burst of timers shares its due times). The loop in `zigzag_varint` costs about
# 2 µs for a millisecond timestamp, the lookup 0.05. Keyed by value: True and 1.0 hash and compare like 1,
# and fastavro writes them as 1 too; a float is truncated the same way whatever it is cached under.
_SMALL: dict[Any, bytes] = {n: zigzag_varint(n) for n in range(-64, 64)}
_LONGS: dict[Any, bytes] = dict(_SMALL)
_CACHED = 8_192  # entries beyond the small ones (about 100 bytes each); then the cache starts over


def write_long(n: Any) -> bytes:
    """Any long not in `_LONGS` yet, with fastavro's conversions and range check; remembered."""
    key = n
    if type(n) is not int:
        if isinstance(n, float | int):  # a float is truncated (fastavro's C cast), a bool/IntEnum is its int
            n = int(n)
        else:
            raise TypeError(f"an integer is required, not {type(n).__name__}")
    if not _MIN_LONG <= n <= _MAX_LONG:
        raise OverflowError(f"{n} is out of Avro's long range")
    encoded = zigzag_varint(n)
    if len(_LONGS) >= len(_SMALL) + _CACHED:
        _LONGS.clear()
        _LONGS.update(_SMALL)
    _LONGS[key] = encoded
    return encoded


# Longs of 6 bytes read lately, by their bytes: millisecond timestamps (2^34 to 2^41 ms: 1970 + 6 months to
# 2039) are 6 bytes, and the same ones come back (see `_LONGS`). Six bytes that are one complete long
# always are that long, wherever they are.
_READ6: dict[bytes, int] = {}


def read_long(b: bytes, p: int) -> tuple[int, int]:
    """(the long at `p`, the position after it)."""
    six = b[p:p + 6]
    n = _READ6.get(six)
    if n is not None:
        return n, p + 6
    start = p
    shift = 0
    n = 0
    while True:
        byte = b[p]
        p += 1
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            n = (n >> 1) ^ -(n & 1)
            if p - start == 6:
                if len(_READ6) >= _CACHED:
                    _READ6.clear()
                _READ6[six] = n
            return n, p
        shift += 7


def _corrupt(what: str) -> Any:
    raise CorruptBody(what)


def _loads(text: str) -> Any:
    try:
        return loads_json(text)
    except ValueError as e:
        raise InvalidValue(f"a JSON field does not hold JSON: {e}") from e


class EnumBytesLookup(dict[bytes, Any]):
    """UTF-8 value -> enum member, for the reader: no `.decode()` of a string that is a known member."""

    def __init__(self, cls: type):
        super().__init__({value.encode(): member for value, member in cls._value2member_map_.items()})  # type: ignore[attr-defined]
        self.enum_name = cls.__name__

    def __missing__(self, key: bytes) -> Any:
        raise InvalidValue(f"{key.decode(errors='replace')!r} is not a valid {self.enum_name}")


class EnumLookup(dict[str, Any]):
    """value -> enum member; a miss says which enum (a StrEnum member may be falsy, so no `.get() or`)."""

    def __init__(self, cls: type):
        super().__init__(cls._value2member_map_)  # type: ignore[attr-defined]
        self.enum_name = cls.__name__

    def __missing__(self, key: Any) -> Any:
        raise InvalidValue(f"{key!r} is not a valid {self.enum_name}")


def plain_init(cls: type) -> bool:
    """May instances be built by filling `__dict__`? Only when the generated `__init__` would do nothing
    else: no `__post_init__` (it may validate), no slots, every field an init field."""
    return (
        cls.__dataclass_params__.init  # type: ignore[attr-defined]
        and not hasattr(cls, "__post_init__")
        and not any("__slots__" in vars(k) for k in cls.__mro__[:-1])
        and all(f.init for f in dataclasses.fields(cls))
    )


class _Source:
    """Lines of one generated function, and fresh local names."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def add(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)


class GeneratedNames:
    """The globals that generated functions see: each constant and each enum lookup under a name of its own.
    One home for the naming both code generators use (this module's, and `schemas.codec`'s dict converters
    for fastavro)."""

    globals: dict[str, Any]
    enums: dict[type, str]

    def _const(self, value: Any) -> str:
        name = f"_k{len(self.globals)}"
        self.globals[name] = value
        return name

    def _enum(self, cls: type) -> str:
        if cls not in self.enums:
            self.enums[cls] = self._const(EnumLookup(cls))
        return self.enums[cls]


class BinaryCodecs(GeneratedNames):
    """Generates `write(obj, append)` (appends the body's pieces) and `read(data, pos) -> (obj, pos)` per
    record type, from the type's fields and its Avro schema (the schema says the order of each union)."""

    def __init__(self) -> None:
        self.globals: dict[str, Any] = {
            "_S": _LONGS, "_long": write_long, "_rlong": read_long, "_dumps": dumps_json, "_loads": _loads,
            "_pd": struct.Struct("<d").pack, "_ud": struct.Struct("<d").unpack_from, "_corrupt": _corrupt,
            "_new": object.__new__, "_setattr": object.__setattr__, "_tuple": tuple,
        }
        self.numbers: dict[type, int] = {}
        self.enums: dict[type, str] = {}
        self.enum_bytes: dict[type, str] = {}

    def writer(self, cls: type, schema: dict[str, Any]) -> Any:
        return self.globals[f"_w{self._record(cls, schema)}"]

    def reader(self, cls: type, schema: dict[str, Any]) -> Any:
        return self.globals[f"_r{self._record(cls, schema)}"]

    # -- generation ------------------------------------------------------------------------------------------
    def _enum_bytes(self, cls: type) -> str:
        if cls not in self.enum_bytes:
            self.enum_bytes[cls] = self._const(EnumBytesLookup(cls))
        return self.enum_bytes[cls]

    def _record(self, cls: type, schema: Any) -> int:
        if cls in self.numbers:
            return self.numbers[cls]
        assert isinstance(schema, dict) and schema.get("type") == "record", (cls, schema)
        n = self.numbers[cls] = len(self.numbers)
        fields = record_fields(cls)
        avro_fields = schema["fields"]
        assert [f.name for f, _ in fields] == [f["name"] for f in avro_fields], cls
        # writer
        w = _Source()
        for (f, node), avro in zip(fields, avro_fields, strict=True):
            self._write(w, 1, node, avro["type"], f"o.{f.name}")
        if not w.lines:
            w.add(1, "pass")
        exec(f"def _w{n}(o, a):\n" + "\n".join(w.lines) + "\n", self.globals)
        # reader
        r = _Source()
        r.add(1, "e = len(b)")
        names = []
        for (_, node), avro in zip(fields, avro_fields, strict=True):
            names.append(self._read(r, 1, node, avro["type"]))
        if plain_init(cls):
            # what the dataclass __init__ would do, minus one object.__setattr__ per field
            values = ", ".join(f"{f.name!r}: {v}" for (f, _), v in zip(fields, names, strict=True))
            r.add(1, f"o = _new({self._const(cls)})")
            r.add(1, f"_setattr(o, '__dict__', {{{values}}})")
        else:
            values = ", ".join(f"{f.name}={v}" for (f, _), v in zip(fields, names, strict=True))
            r.add(1, f"o = {self._const(cls)}({values})")
        r.add(1, "return o, p")
        exec(f"def _r{n}(b, p):\n" + "\n".join(r.lines) + "\n", self.globals)
        return n

    @staticmethod
    def _branches(avro: Any) -> tuple[bytes, bytes]:
        """(the union index written for null, the one for the value) of a nullable field's union."""
        assert isinstance(avro, list) and len(avro) == 2 and "null" in avro, avro
        return (b"\x00", b"\x02") if avro[0] == "null" else (b"\x02", b"\x00")

    def _write(self, s: _Source, d: int, node: Node, avro: Any, x: str) -> None:
        """Lines appending the Avro encoding of the Python value `x` (an expression without side effects)."""
        if isinstance(node, Prim):
            if node.avro == "string":
                t = s.name("t")
                s.add(d, f"{t} = {x}.encode()")
                self._length(s, d, t)
            elif node.avro == "bytes":
                t = s.name("t")
                s.add(d, f"{t} = {x}")
                self._length(s, d, t)
            elif node.avro == "long":
                t = s.name("t")
                s.add(d, f"{t} = {x}")
                s.add(d, f"a(_S.get({t}) or _long({t}))")
            elif node.avro == "boolean":
                s.add(d, f"a(b'\\x01' if {x} else b'\\x00')")
            elif node.avro == "double":
                s.add(d, f"a(_pd({x}))")
            else:  # pragma: no cover - avro.py maps nothing else
                raise AssertionError(node)
        elif isinstance(node, EnumOf):  # validates: a bad value fails here, not in a consumer
            t = s.name("t")
            s.add(d, f"{t} = {self._enum(node.cls)}[{x}].encode()")
            self._length(s, d, t)
        elif isinstance(node, JsonText):
            t = s.name("t")
            s.add(d, f"{t} = _dumps({x}).encode()")
            self._length(s, d, t)
        elif isinstance(node, Nullable):
            null, value = self._branches(avro)
            inner = next(t for t in avro if t != "null")
            t = s.name("v")
            s.add(d, f"{t} = {x}")
            s.add(d, f"if {t} is None:")
            s.add(d + 1, f"a({null!r})")
            s.add(d, "else:")
            s.add(d + 1, f"a({value!r})")
            self._write(s, d + 1, node.inner, inner, t)
        elif isinstance(node, ArrayOf):
            t, i = s.name("v"), s.name("i")
            s.add(d, f"{t} = {x}")
            s.add(d, f"if {t}:")
            s.add(d + 1, f"a(_S.get(len({t})) or _long(len({t})))")
            s.add(d + 1, f"for {i} in {t}:")
            self._write(s, d + 2, node.items, avro["items"], i)
            s.add(d, "a(b'\\x00')")
        elif isinstance(node, MapOf):
            t, k, v = s.name("v"), s.name("k"), s.name("i")
            s.add(d, f"{t} = {x}")
            s.add(d, f"if {t}:")
            s.add(d + 1, f"a(_S.get(len({t})) or _long(len({t})))")
            s.add(d + 1, f"for {k}, {v} in {t}.items():")
            self._write(s, d + 2, Prim("string"), "string", k)
            self._write(s, d + 2, node.values, avro["values"], v)
            s.add(d, "a(b'\\x00')")
        else:
            assert isinstance(node, RecordOf)
            s.add(d, f"_w{self._record(node.cls, avro)}({x}, a)")

    @staticmethod
    def _length(s: _Source, d: int, t: str) -> None:
        s.add(d, f"a(_S.get(len({t})) or _long(len({t})))")
        s.add(d, f"a({t})")

    def _long(self, s: _Source, d: int, v: str) -> None:
        """Lines reading a long into `v` (one byte inline, longer ones by `read_long`)."""
        s.add(d, f"{v} = b[p]")
        s.add(d, f"if {v} < 128:")
        s.add(d + 1, "p += 1")
        s.add(d + 1, f"{v} = ({v} >> 1) ^ -({v} & 1)")
        s.add(d, "else:")
        s.add(d + 1, f"{v}, p = _rlong(b, p)")

    def _read(self, s: _Source, d: int, node: Node, avro: Any) -> str:
        """Lines reading one value; returns the local name that holds the Python value."""
        v = s.name("v")
        if isinstance(node, Prim | EnumOf | JsonText) and (not isinstance(node, Prim) or node.avro in
                                                              ("string", "bytes")):
            self._long(s, d, v)
            t = s.name("t")
            s.add(d, f"{t} = p + {v}")
            s.add(d, f"if {v} < 0 or {t} > e:  # a slice past the end would be short, not an error")
            s.add(d + 1, "_corrupt('a negative length' if " + v + " < 0 else 'truncated')")
            raw = f"b[p:{t}]"
            if isinstance(node, Prim) and node.avro == "bytes":
                s.add(d, f"{v} = {raw}")
            elif isinstance(node, EnumOf):
                s.add(d, f"{v} = {self._enum_bytes(node.cls)}[{raw}]")
            elif isinstance(node, JsonText):  # "null", the commonest, without a call
                s.add(d, f"{v} = {raw}")
                s.add(d, f"{v} = None if {v} == b'null' else _loads({v}.decode())")
            else:
                s.add(d, f"{v} = {raw}.decode()")
            s.add(d, f"p = {t}")
        elif isinstance(node, Prim):
            if node.avro == "long":
                self._long(s, d, v)
            elif node.avro == "boolean":
                s.add(d, f"{v} = b[p] != 0")
                s.add(d, "p += 1")
            elif node.avro == "double":
                s.add(d, f"{v} = _ud(b, p)[0]")
                s.add(d, "p += 8")
            else:  # pragma: no cover
                raise AssertionError(node)
        elif isinstance(node, Nullable):
            null, _ = self._branches(avro)
            inner = next(t for t in avro if t != "null")
            i = s.name("u")
            self._long(s, d, i)
            s.add(d, f"if {i} == {null[0] // 2}:")
            s.add(d + 1, f"{v} = None")
            s.add(d, f"elif {i} == {1 - null[0] // 2}:")
            got = self._read(s, d + 1, node.inner, inner)
            s.add(d + 1, f"{v} = {got}")
            s.add(d, "else:")
            s.add(d + 1, f"_corrupt('union index ' + str({i}))")
        elif isinstance(node, ArrayOf | MapOf):
            n, items = s.name("n"), s.name("l")
            s.add(d, f"{items} = {{}}" if isinstance(node, MapOf) else f"{items} = []")
            self._long(s, d, n)
            s.add(d, f"while {n}:")
            s.add(d + 1, f"if {n} < 0:  # a block with its size in bytes (other writers; fastavro writes none)")
            s.add(d + 2, f"{n} = -{n}")
            self._long(s, d + 2, s.name("z"))
            s.add(d + 1, f"for _ in range({n}):")
            if isinstance(node, MapOf):
                key = self._read(s, d + 2, Prim("string"), "string")
                got = self._read(s, d + 2, node.values, avro["values"])
                s.add(d + 2, f"{items}[{key}] = {got}")
            else:
                got = self._read(s, d + 2, node.items, avro["items"])
                s.add(d + 2, f"{items}.append({got})")
            self._long(s, d + 1, n)
            if isinstance(node, ArrayOf) and node.container is tuple:
                s.add(d, f"{v} = _tuple({items})")
            else:
                s.add(d, f"{v} = {items}")
        else:
            assert isinstance(node, RecordOf)
            s.add(d, f"{v}, p = _r{self._record(node.cls, avro)}(b, p)")
        return v
