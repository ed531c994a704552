"""One digest over a whole bundle: every file beside ``manifest.json`` and every manifest field.

:func:`~service.bundle.write_manifest` adds an ``integrity`` record to the manifest:

- ``files``: the sha256 of every file at the top of the bundle folder when the manifest is
  written (``model.onnx``, ``decoder.onnx``; not ``manifest.json`` itself, not hidden
  files, not the ``report/`` folder, which is for people and written afterwards);
- ``fields``: the sha256 of each of the manifest's other top-level fields (``features``,
  ``calibration``, ``onnx_sha256``, ...), each in canonical JSON (sorted keys, no spaces);
- ``sha256``: the sha256 of ``files`` and ``fields`` together, in canonical JSON: the one
  digest that covers the whole bundle.

:func:`check` recomputes all three at load and names the file or field that disagrees. The
record catches edits, truncated copies and swapped files; it is not a signature (there is no
key), so whoever recomputes every digest can still change a bundle on purpose.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from service.errors import BundleError

INTEGRITY_KEY = "integrity"


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def value_sha256(value: Any) -> str:
    """The sha256 of a JSON value in canonical form (sorted keys, no spaces, ASCII)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def bundle_files(directory: Path, manifest_name: str) -> list[Path]:
    """The files the record covers: regular files at the top of ``directory``, but the
    manifest and hidden files (temporary files of a writer in progress)."""
    return sorted(
        p for p in directory.iterdir() if p.is_file() and p.name != manifest_name and not p.name.startswith(".")
    )


def record(directory: Path, data: Mapping[str, Any], manifest_name: str) -> dict[str, Any]:
    """The ``integrity`` record of a bundle whose manifest content (without the record) is ``data``."""
    files = {p.name: file_sha256(p) for p in bundle_files(directory, manifest_name)}
    fields = {key: value_sha256(value) for key, value in data.items() if key != INTEGRITY_KEY}
    return {"files": files, "fields": fields, "sha256": value_sha256({"files": files, "fields": fields})}


def check(
    directory: Path,
    data: Mapping[str, Any],
    source: str,
    digest_of: Callable[[Path], str] = file_sha256,
) -> bool:
    """Verify the manifest's ``integrity`` record against its fields and the bundle's files.

    Args:
        directory: the bundle folder.
        data: the parsed manifest.
        source: the manifest's path, for messages.
        digest_of: a file's sha256 (the caller's, to hash each file once).

    Returns:
        False when the manifest has no record (written before records existed), else True.

    Raises:
        BundleError: naming the manifest field or the file that disagrees with the record.
    """
    entry = data.get(INTEGRITY_KEY)
    if entry is None:
        return False
    files, fields = _parts(entry, source)
    if value_sha256({"files": files, "fields": fields}) != entry.get("sha256"):
        msg = (
            f"{source}: field {INTEGRITY_KEY!r}: its sha256 does not match its own files and fields; "
            "the record was edited (retrain the bundle, or restore its original manifest.json)"
        )
        raise BundleError(msg)
    current = {key: value for key, value in data.items() if key != INTEGRITY_KEY}
    changed = sorted(key for key in current.keys() & fields.keys() if value_sha256(current[key]) != fields[key])
    added = sorted(current.keys() - fields.keys())
    removed = sorted(fields.keys() - current.keys())
    if changed or added or removed:
        problems = [
            f"{key!r} {label}"
            for label, keys in (("changed", changed), ("added", added), ("removed", removed))
            for key in keys
        ]
        msg = (
            f"{source}: field(s) {', '.join(problems)} since the bundle was written (they disagree with its "
            f"{INTEGRITY_KEY!r} record); the manifest was edited: retrain the bundle, or restore the original"
        )
        raise BundleError(msg)
    for name, expected in sorted(files.items()):
        path = directory / name
        if not path.is_file():
            msg = f"{directory}: {name} is missing (the manifest's {INTEGRITY_KEY!r} record lists it)"
            raise BundleError(msg)
        digest = digest_of(path)
        if digest != expected:
            msg = (
                f"{path}: sha256 {digest[:12]}... does not match the manifest's {INTEGRITY_KEY!r} record "
                f"{expected[:12]}...; the file was changed or replaced"
            )
            raise BundleError(msg)
    return True


def _parts(entry: Any, source: str) -> tuple[dict[str, str], dict[str, str]]:
    files = entry.get("files") if isinstance(entry, dict) else None
    fields = entry.get("fields") if isinstance(entry, dict) else None
    if not (isinstance(files, dict) and isinstance(fields, dict)):
        msg = f"{source}: field {INTEGRITY_KEY!r} is not a record of files and fields"
        raise BundleError(msg)
    return files, fields
