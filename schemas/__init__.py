"""Wire formats: Avro schemas derived from the dataclasses, and the codec that writes and reads them.

- `schemas.avro`: `avro_schema_for(cls)`, the one mapping from a dataclass to an Avro record schema.
- `schemas.codec`: `Codec` (encode/decode with single-object or Confluent framing), `DecodeError`,
  `encode_key`/`decode_key`.
- `schemas.records`: the non-core records (transfer events, DLQ, templates, payment command/result).
- `schemas.registry`: `RECORD_TYPES`, every type with a committed `schemas/*.avsc`.
- `python -m schemas.generate`: rewrites the `.avsc` files; `schemas/history/` keeps released versions.
"""
