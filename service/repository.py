"""The model repository on disk: which bundle directories it holds, and whether their files
have stopped changing.

A bundle is copied into place file by file (``cp -r`` writes ``manifest.json``, ``model.onnx``
and ``decoder.onnx`` in whatever order the source directory lists them), so a scan can see
a version whose files are partial or missing. :func:`fingerprint` records the path, size,
modification and change time of *every* file under a version directory, so any file
arriving, growing or being replaced changes it; :func:`last_change` says when a file last
changed, from which the registry tells a copy still in progress from a settled, broken
bundle.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from service.bundle import MANIFEST_FILE, ONNX_FILE

logger = logging.getLogger(__name__)

# (path relative to the version directory, size in bytes, mtime_ns, ctime_ns) of each file,
# sorted by path. The change time (ctime) is there because a copy that keeps the source's
# modification times (`cp -a`, `rsync -a`) still sets it to the time of the copy.
Fingerprint = tuple[tuple[str, int, int, int], ...]
# model -> version -> (directory, fingerprint)
Found = dict[str, dict[str, tuple[Path, Fingerprint]]]


def fingerprint(directory: Path) -> Fingerprint | None:
    """Every file under ``directory``, hidden ones included (a writer's temporary file is a
    change in progress); None when ``manifest.json`` or ``model.onnx`` is missing: not a
    bundle (yet)."""
    if not (directory / MANIFEST_FILE).is_file() or not (directory / ONNX_FILE).is_file():
        return None
    entries = []
    for folder, _, files in os.walk(directory):
        for name in files:
            path = Path(folder) / name
            try:
                stat = path.stat()
            except OSError:  # removed or renamed since it was listed: the next scan sees it
                continue
            entries.append((str(path.relative_to(directory)), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))
    return tuple(sorted(entries))


def last_change(fp: Fingerprint) -> float:
    """When a file of the bundle last changed, in seconds since the epoch (``time.time()``'s scale)."""
    return max((max(mtime, ctime) for _, _, mtime, ctime in fp), default=0) / 1e9


def manifest_version(directory: Path) -> str:
    """The version a manifest names (``"1"`` when it names none or cannot be read)."""
    try:
        version = json.loads((directory / MANIFEST_FILE).read_text()).get("version")
    except (OSError, ValueError, AttributeError):
        version = None
    return str(version) if version else "1"


def scan(root: Path) -> Found:
    """The bundles under ``root`` now: ``DIR/<model>/<version>/``, or ``DIR/<model>/`` when
    that directory is itself a bundle (labelled with its manifest's version). Hidden
    directories (``.``-prefixed) are skipped: a writer's staging area."""
    found: Found = {}
    if not root.is_dir():
        logger.warning("model repository %s is not a directory", root)
        return found
    for model_dir in sorted(root.iterdir()):
        if not model_dir.is_dir() or model_dir.name.startswith("."):
            continue
        versions: dict[str, tuple[Path, Fingerprint]] = {}
        if (model_dir / MANIFEST_FILE).is_file():
            fp = fingerprint(model_dir)
            if fp is not None:
                versions[manifest_version(model_dir)] = (model_dir, fp)
        else:
            for version_dir in sorted(model_dir.iterdir()):
                if not version_dir.is_dir() or version_dir.name.startswith("."):
                    continue
                fp = fingerprint(version_dir)
                if fp is None:
                    logger.debug("skipping %s: no complete bundle (yet)", version_dir)
                    continue
                versions[version_dir.name] = (version_dir, fp)
        if versions:
            found[model_dir.name] = versions
    return found
