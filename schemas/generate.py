"""Write `schemas/<record>.avsc` for every record type, from the dataclasses.

    python -m schemas.generate            # (re)write the files, remove ones whose type is gone
    python -m schemas.generate --check    # exit 1 if a committed file is stale (what the unit test checks)
    python -m schemas.generate --archive  # at a release: keep every committed schema in schemas/history

The `.avsc` files are generated, never edited: they are the reviewable record of the wire format, so a
change to a message shows up in review as a schema diff. A released schema that changes must first be
archived (`--archive`), so the codec keeps reading records written with it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from schemas.avro import avro_schema_for, snake_case
from schemas.codec import HISTORY_DIR, fingerprint

SCHEMA_DIR = Path(__file__).parent


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def expected_files(types: tuple[type, ...] | None = None) -> dict[str, str]:
    """File name -> content of every generated schema."""
    if types is None:
        from schemas.registry import RECORD_TYPES

        types = RECORD_TYPES
    return {f"{snake_case(cls.__name__)}.avsc": render(avro_schema_for(cls)) for cls in types}


def stale_files(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of the files that differ from what `generate` would write (missing, changed or extra)."""
    expected = expected_files()
    committed = {p.name: p.read_text() for p in directory.glob("*.avsc")}
    return sorted(name for name in expected.keys() | committed.keys() if expected.get(name) != committed.get(name))


def generate(directory: Path = SCHEMA_DIR) -> list[str]:
    expected = expected_files()
    changed = []
    for name, text in expected.items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(f"wrote {name}")
    for path in sorted(directory.glob("*.avsc")):
        if path.name not in expected:
            path.unlink()
            changed.append(f"removed {path.name} (no such record type any more; archive it first if released)")
    return changed


def archive(directory: Path = SCHEMA_DIR, history: Path = HISTORY_DIR) -> list[str]:
    archived = []
    for path in sorted(directory.glob("*.avsc")):
        schema = json.loads(path.read_text())
        target = history / path.stem / f"{fingerprint(schema).hex()}.avsc"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            archived.append(f"archived {path.name} as {target.parent.name}/{target.name}")
    return archived


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.generate", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="fail if a committed .avsc is stale")
    group.add_argument("--archive", action="store_true", help="copy the committed .avsc files into history")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"stale: schemas/{name}")
        if stale:
            print("run `python -m schemas.generate`")
        return 1 if stale else 0
    for line in archive() if args.archive else generate():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
