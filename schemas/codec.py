"""Bytes on the wire <-> the core's dataclasses.

Every value Flowline writes to Kafka is one Avro record whose first bytes say which schema wrote it, so a
topic may carry several record types (`workflow.commands` carries every command) and any consumer finds
the writer schema without asking anyone:

- default, Avro single-object encoding: `C3 01`, the 8-byte little-endian CRC-64-AVRO fingerprint of the
  writer schema's parsing canonical form, then the Avro binary body;
- with a schema registry (`FLOWLINE_SCHEMA_REGISTRY_URL`): Confluent wire format, `00`, a 4-byte
  big-endian schema id, then the body. Ids come from a `SchemaIdResolver`.

Decoding accepts either framing, looks the writer schema up, and resolves it to the current dataclass with
Avro's reader-schema rules (a field the writer lacks gets its default; a field the reader lacks is
skipped). The writer schemas a codec knows are the current ones plus every released older version under
`schemas/history/<record>/<fingerprint>.avsc`. A consumer cannot decode a single-object record whose
writer schema is newer than its own code: roll consumers out first, or ship the new schema in their
history, or use a registry (which serves any writer schema by id).

A record of a current schema is written and read by functions generated once per class from that schema
(schemas/binary.py: straight between the dataclass and the Avro body, byte for byte what fastavro writes,
a few times faster, because the engine encodes a state for every step it decides). A record of any other
writer schema (history, registry) is read by fastavro, with reader-schema resolution, into a dict that a
converter generated per class (like `dataclasses` does for `__init__`) turns into the dataclass.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, Protocol

from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from schemas.avro import (
    NAMESPACE,
    ArrayOf,
    EnumOf,
    JsonText,
    MapOf,
    Node,
    Nullable,
    Prim,
    avro_schema_for,
    dumps_json,
    loads_json,
    record_fields,
)
from schemas.binary import BinaryCodecs, GeneratedNames, InvalidValue, plain_init
from schemas.settings import env as setting

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
HISTORY_DIR = Path(__file__).parent / "history"
REGISTRY_URL_ENV = "FLOWLINE_SCHEMA_REGISTRY_URL"


class DecodeError(ValueError):
    """These bytes are not a record this codec can read (the DLQ's `reason`)."""


class EncodeError(ValueError):
    """This value cannot be written under its schema (a bug in the producer, not bad input)."""


def fingerprint(schema: Mapping[str, Any] | str) -> bytes:
    """CRC-64-AVRO of the parsing canonical form, in the little-endian byte order the header uses."""
    canonical = to_parsing_canonical_form(schema)
    return bytes.fromhex(_fastavro_fingerprint(canonical, "CRC-64-AVRO"))


def fullname(schema: Mapping[str, Any]) -> str:
    name = schema["name"]
    namespace = schema.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


class SchemaIdResolver(Protocol):
    """Schema <-> registry id for the Confluent wire format (synchronous: ids are cached after first use)."""

    def id_for(self, schema: Mapping[str, Any]) -> int: ...

    def schema_for(self, schema_id: int) -> Mapping[str, Any]: ...


class InMemorySchemaRegistry:
    """A `SchemaIdResolver` kept in a dict: for tests and single-process tools.

    The HTTP client for a real (Confluent-compatible) schema registry is NOT written yet; until it is,
    `Codec.from_env` refuses to start when `FLOWLINE_SCHEMA_REGISTRY_URL` is set without a resolver.
    Like a registry, equal schemas (same parsing canonical form) get the same id.
    """

    def __init__(self, first_id: int = 1):
        self._next = first_id
        self._ids: dict[str, int] = {}
        self._schemas: dict[int, Mapping[str, Any]] = {}

    def id_for(self, schema: Mapping[str, Any]) -> int:
        canonical = to_parsing_canonical_form(schema)
        if canonical not in self._ids:
            self._ids[canonical] = self._next
            self._schemas[self._next] = json.loads(json.dumps(schema))
            self._next += 1
        return self._ids[canonical]

    def schema_for(self, schema_id: int) -> Mapping[str, Any]:
        try:
            return self._schemas[schema_id]
        except KeyError:
            raise LookupError(f"schema id {schema_id} is not registered") from None


def load_history(root: Path = HISTORY_DIR) -> list[dict[str, Any]]:
    """Released older writer schemas, `<root>/<record>/<fingerprint>.avsc` (the file name is checked)."""
    schemas = []
    for path in sorted(root.glob("*/*.avsc")):
        schema = json.loads(path.read_text())
        actual = fingerprint(schema).hex()
        if path.stem != actual:
            raise ValueError(f"{path}: named {path.stem} but its fingerprint is {actual}")
        schemas.append(schema)
    return schemas


# -- generated converters ---------------------------------------------------------------------------------


class _Converters(GeneratedNames):
    """Builds `to_dict(obj) -> dict` and `from_dict(dict) -> obj` per dataclass, as generated source."""

    def __init__(self) -> None:
        self.globals: dict[str, Any] = {
            "_dumps": dumps_json,
            "_loads": loads_json,
            "_new": object.__new__,
            "_setattr": object.__setattr__,
        }
        self.names: dict[type, int] = {}
        self.enums: dict[type, str] = {}

    def _helper(self, prefix: str, body: str) -> str:
        name = f"_{prefix}{len(self.globals)}"
        exec(f"def {name}(x):\n    return {body}\n", self.globals)
        return name

    def _record(self, cls: type) -> int:
        if cls in self.names:
            return self.names[cls]
        n = self.names[cls] = len(self.names)
        cls_name = self._const(cls)
        # define both functions before generating field code, so recursive types refer to them by name
        self.globals[f"_to{n}"] = self.globals[f"_from{n}"] = None
        fields = record_fields(cls)
        enc = ", ".join(f"{f.name!r}: {self.enc(node, f'o.{f.name}')}" for f, node in fields)
        exec(f"def _to{n}(o):\n    return {{{enc}}}\n", self.globals)
        if plain_init(cls):
            # what the dataclass __init__ would do, minus one object.__setattr__ per field (3x faster)
            dec = ", ".join(f"{f.name!r}: {self.dec(node, f'd[{f.name!r}]')}" for f, node in fields)
            body = f"o = _new({cls_name})\n    _setattr(o, '__dict__', {{{dec}}})\n    return o"
        else:
            dec = ", ".join(f"{f.name}={self.dec(node, f'd[{f.name!r}]')}" for f, node in fields)
            body = f"return {cls_name}({dec})"
        exec(f"def _from{n}(d):\n    {body}\n", self.globals)
        return n

    def to_dict(self, cls: type) -> Any:
        return self.globals[f"_to{self._record(cls)}"]

    def from_dict(self, cls: type) -> Any:
        return self.globals[f"_from{self._record(cls)}"]

    def enc(self, node: Node, x: str) -> str:
        """An expression writing the Python value `x` in the form fastavro takes."""
        if isinstance(node, Prim):
            return x
        if isinstance(node, EnumOf):  # validates: a bad value fails here, not in a consumer
            return f"{self._enum(node.cls)}[{x}]"
        if isinstance(node, JsonText):
            return f"_dumps({x})"
        if isinstance(node, Nullable):
            inner = self.enc(node.inner, "x")
            return x if inner == "x" else f"{self._helper('e', f'None if x is None else {inner}')}({x})"
        if isinstance(node, ArrayOf):
            item = self.enc(node.items, "i")
            return x if item == "i" else f"{self._helper('e', f'[{item} for i in x]')}({x})"
        if isinstance(node, MapOf):
            value = self.enc(node.values, "v")
            return x if value == "v" else f"{self._helper('e', f'{{k: {value} for k, v in x.items()}}')}({x})"
        return f"_to{self._record(node.cls)}({x})"

    def dec(self, node: Node, x: str) -> str:
        """An expression building the Python value from fastavro's value `x`."""
        if isinstance(node, Prim):
            return x
        if isinstance(node, EnumOf):
            return f"{self._enum(node.cls)}[{x}]"
        if isinstance(node, JsonText):
            return f"_loads({x})"
        if isinstance(node, Nullable):
            inner = self.dec(node.inner, "x")
            return x if inner == "x" else f"{self._helper('d', f'None if x is None else {inner}')}({x})"
        if isinstance(node, ArrayOf):
            item = self.dec(node.items, "i")
            if node.container is tuple:
                return f"tuple({x})" if item == "i" else f"{self._helper('d', f'tuple([{item} for i in x])')}({x})"
            return x if item == "i" else f"{self._helper('d', f'[{item} for i in x]')}({x})"
        if isinstance(node, MapOf):
            value = self.dec(node.values, "v")
            return x if value == "v" else f"{self._helper('d', f'{{k: {value} for k, v in x.items()}}')}({x})"
        return f"_from{self._record(node.cls)}({x})"


# -- the codec ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Current:
    cls: type
    schema: dict[str, Any]
    parsed: Any
    fingerprint: bytes
    header: bytes
    to_dict: Any  # obj -> fastavro's dict (tests and tools; encoding uses `write`)
    write: Any  # (obj, append): appends the Avro body's pieces (schemas/binary.py)


@dataclass(frozen=True)
class _Reader:
    """How to read one writer schema: into which class, through which reader schema (None: same schema)."""

    cls: type
    name: str
    writer: Any
    reader: Any
    from_dict: Any
    read: Any = None  # (data, pos) -> (obj, pos after it) for the current schema; else fastavro resolves


def _read_whole(reader: _Reader, end: int, length: int) -> None:
    """A body must end where the record does: a reader that stopped short or ran past it read a corrupt one."""
    if end > length:
        raise DecodeError(f"truncated/corrupt body for record {reader.name}: {end - length} bytes missing")
    if end < length:
        raise DecodeError(f"truncated/corrupt body for record {reader.name}: {length - end} bytes after the record")


class Codec:
    """Encode the registered dataclasses to bytes and decode bytes back to them.

    `types`: the dataclasses this codec writes and reads (default: every Flowline record type).
    `history`: older writer schemas it can still read (default: `schemas/history`).
    `resolver`: given, records are written in the Confluent wire format with ids from it; either way
    both framings decode (the Confluent one only with a resolver).
    """

    def __init__(
        self,
        types: Iterable[type] | None = None,
        *,
        history: Iterable[Mapping[str, Any]] | None = None,
        resolver: SchemaIdResolver | None = None,
        namespace: str = NAMESPACE,
    ):
        if types is None:
            from schemas.registry import RECORD_TYPES

            types = RECORD_TYPES
        self.resolver = resolver
        self._converters = _Converters()
        self._binary = BinaryCodecs()
        self._current: dict[type, _Current] = {}
        self._by_name: dict[str, _Current] = {}
        self._by_fingerprint: dict[bytes, _Reader] = {}
        self._by_schema_id: dict[int, _Reader] = {}
        self._schema_ids: dict[type, bytes] = {}  # class -> Confluent header
        for cls in types:
            schema = avro_schema_for(cls, namespace)
            name = fullname(schema)
            if name in self._by_name:
                raise ValueError(f"two record types named {name}: {self._by_name[name].cls!r} and {cls!r}")
            fp = fingerprint(schema)
            current = _Current(
                cls=cls,
                schema=schema,
                parsed=parse_schema(schema, named_schemas={}),
                fingerprint=fp,
                header=SINGLE_OBJECT_MAGIC + fp,
                to_dict=self._converters.to_dict(cls),
                write=self._binary.writer(cls, schema),
            )
            self._current[cls] = self._by_name[name] = current
            self._by_fingerprint[fp] = _Reader(cls, cls.__name__, current.parsed, None, self._converters.from_dict(cls),
                                               self._binary.reader(cls, schema))
        for schema in load_history() if history is None else history:
            if history is None and fullname(schema) not in self._by_name:
                continue  # the released history of a record this codec was not asked to know
            self._add_writer(schema)

    @classmethod
    def from_env(
        cls,
        types: Iterable[type] | None = None,
        env: Mapping[str, str] | None = None,
        resolver: SchemaIdResolver | None = None,
    ) -> Codec:
        """The process's codec: Confluent framing when `FLOWLINE_SCHEMA_REGISTRY_URL` is set."""
        url = setting(REGISTRY_URL_ENV, env)
        if url and resolver is None:
            raise RuntimeError(
                f"{REGISTRY_URL_ENV}={url} is set, but the HTTP schema registry client is not written yet: "
                "unset it to use single-object encoding, or pass a SchemaIdResolver"
            )
        return cls(types, resolver=resolver if url else None)

    def _add_writer(self, schema: Mapping[str, Any]) -> _Reader:
        """Register an older (or newer) writer schema of a known record, read into the current class."""
        fp = fingerprint(schema)
        if fp in self._by_fingerprint:
            return self._by_fingerprint[fp]
        name = fullname(schema)
        current = self._by_name.get(name)
        if current is None:
            raise DecodeError(f"writer schema {name} (fingerprint 0x{fp.hex()}) is not a record type this codec knows")
        reader = _Reader(
            current.cls,
            current.cls.__name__,
            parse_schema(dict(schema), named_schemas={}),
            current.parsed,
            self._converters.from_dict(current.cls),
        )
        self._by_fingerprint[fp] = reader
        return reader

    @property
    def types(self) -> tuple[type, ...]:
        return tuple(self._current)

    def schema(self, cls: type) -> dict[str, Any]:
        return self._current[cls].schema

    def fingerprint(self, cls: type) -> bytes:
        return self._current[cls].fingerprint

    def encode(self, obj: Any) -> bytes:
        current = self._current.get(type(obj))
        if current is None:
            raise EncodeError(f"no schema for {type(obj).__name__}: not one of this codec's record types")
        parts = [current.header if self.resolver is None else self._confluent_header(current)]
        try:
            current.write(obj, parts.append)
        except Exception as e:
            raise EncodeError(f"cannot encode {type(obj).__name__}: {type(e).__name__}: {e}") from e
        return b"".join(parts)

    def _confluent_header(self, current: _Current) -> bytes:
        header = self._schema_ids.get(current.cls)
        if header is None:
            assert self.resolver is not None
            schema_id = self.resolver.id_for(current.schema)
            header = self._schema_ids[current.cls] = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")
        return header

    def decode(self, data: bytes, expected: type | tuple[type, ...] | None = None) -> Any:
        """The dataclass these bytes hold; `expected` restricts which types this topic may carry."""
        if type(data) is not bytes:
            if data is None:
                raise DecodeError("no value (a tombstone?)")
            data = bytes(data)  # a memoryview or bytearray: the fingerprint slice must be hashable
        if data[:2] == SINGLE_OBJECT_MAGIC:
            body_at = 10
            reader = self._by_fingerprint.get(data[2:10])
            if reader is None:
                if len(data) < 10:
                    raise DecodeError(f"truncated single-object header: {len(data)} bytes, need 10")
                raise DecodeError(f"unknown schema fingerprint 0x{data[2:10].hex()}")
        elif data[:1] == CONFLUENT_MAGIC and self.resolver is not None:
            body_at = 5
            reader = self._confluent_reader(data)
        else:
            expected_magic = "C3 01" if self.resolver is None else "C3 01, or 00 for the Confluent wire format"
            got = data[:2].hex(" ") or "nothing"
            raise DecodeError(f"not Avro single-object encoding (expected magic {expected_magic}, got {got})")
        if expected is not None and not issubclass(reader.cls, expected):
            names = ", ".join(t.__name__ for t in expected) if isinstance(expected, tuple) else expected.__name__
            raise DecodeError(f"record {reader.name} is not one of the types expected here ({names})")
        if reader.read is not None:  # written with the current schema: the generated reader
            try:
                record, end = reader.read(data, body_at)
            except InvalidValue as e:
                raise DecodeError(f"invalid values for record {reader.name}: {type(e).__name__}: {e}") from e
            except Exception as e:
                raise DecodeError(f"truncated/corrupt body for record {reader.name}: {type(e).__name__}: {e}") from e
            _read_whole(reader, end, len(data))
            return record
        body = BytesIO(data)
        body.seek(body_at)
        try:
            record = schemaless_reader(body, reader.writer, reader.reader)
        except Exception as e:
            raise DecodeError(f"truncated/corrupt body for record {reader.name}: {type(e).__name__}: {e}") from e
        _read_whole(reader, body.tell(), len(data))
        try:
            return reader.from_dict(record)
        except Exception as e:
            raise DecodeError(f"invalid values for record {reader.name}: {type(e).__name__}: {e}") from e

    def _confluent_reader(self, data: bytes) -> _Reader:
        if len(data) < 5:
            raise DecodeError(f"truncated Confluent header: {len(data)} bytes, need 5")
        schema_id = int.from_bytes(data[1:5], "big")
        reader = self._by_schema_id.get(schema_id)
        if reader is None:
            assert self.resolver is not None
            try:
                schema = self.resolver.schema_for(schema_id)
            except LookupError as e:
                raise DecodeError(f"unknown schema id {schema_id}: {e}") from e
            reader = self._by_schema_id[schema_id] = self._add_writer(schema)
        return reader


def encode_key(key: str) -> bytes:
    return key.encode("utf-8")


def decode_key(data: bytes | None) -> str:
    if data is None:
        raise DecodeError("record has no key")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError(f"key is not UTF-8: {e}") from e
