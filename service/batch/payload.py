"""A bundle as bytes, and the one scorer per process opened from it.

Where the bundle's folder does not exist (a Dask worker, a Spark executor), its files travel as a
:class:`BundlePayload`. :func:`cached_scorer` writes them to a local temporary folder once per
process, verifies them and opens one :class:`~service.scorer.Scorer`, reused for the life of the
process by every thread and every call (the Dask engine's tasks, :func:`~service.batch.spark.score_pandas`).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from service.batch.rows import SCORER_CHUNK_ROWS
from service.bundle import MANIFEST_FILE, Bundle, load_bundle
from service.scorer import Scorer


@dataclass(frozen=True)
class BundlePayload:
    """A bundle as bytes, to send where its folder does not exist (Dask workers, Spark executors).

    Build it with :meth:`from_bundle`: it holds every file at the top of the bundle folder
    (``model.onnx``, ``manifest.json``, and any other graph the manifest records; not
    ``report/``). :func:`cached_scorer` writes them out again and verifies them with
    :func:`~service.bundle.load_bundle` before scoring.

    Attributes:
        name: the model's name.
        version: the model's version.
        key: sha256 over the files' names and contents: equal keys, equal bundles.
        files: file name -> bytes.
    """

    name: str
    version: str
    key: str
    files: dict[str, bytes]

    @classmethod
    def from_bundle(cls, bundle: Bundle | str | os.PathLike[str]) -> BundlePayload:
        """Read a bundle's files (verifying the bundle first).

        Raises:
            BundleError: the folder is not a valid bundle.
        """
        if not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle)
        paths = sorted(p for p in bundle.path.iterdir() if p.is_file() and not p.name.startswith("."))
        files = {p.name: p.read_bytes() for p in paths}
        digest = hashlib.sha256()
        for name, data in files.items():
            digest.update(f"{name}\0{len(data)}\0".encode())
            digest.update(data)
        return cls(name=bundle.manifest.name, version=bundle.manifest.version, key=digest.hexdigest(), files=files)

    def materialize(self, root: Path) -> Path:
        """Write the bundle under ``root`` (once per key) and return its folder."""
        directory = root / self.key[:32]
        if not (directory / MANIFEST_FILE).is_file():
            staging = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
            for name, data in self.files.items():
                (staging / name).write_bytes(data)
            try:
                staging.rename(directory)
            except OSError:  # another thread got there first
                shutil.rmtree(staging, ignore_errors=True)
        return directory

    def __repr__(self) -> str:  # keep the bytes out of logs and task reprs
        return f"BundlePayload({self.name!r}, version {self.version!r}, key {self.key[:12]}...)"


_scorers: dict[tuple[str, str, int | None], Scorer] = {}
_scorers_lock = threading.Lock()
_bundle_root: Path | None = None


def _root() -> Path:
    global _bundle_root
    if _bundle_root is None:
        _bundle_root = Path(tempfile.mkdtemp(prefix="latentwatch-bundles-"))
        atexit.register(shutil.rmtree, _bundle_root, ignore_errors=True)
    return _bundle_root


def cached_scorer(payload: BundlePayload, *, device: str = "auto", intra_op_threads: int | None = None) -> Scorer:
    """This process's :class:`Scorer` for ``payload`` (opened on first use, then reused).

    Safe to call from many threads; onnxruntime sessions score from many threads at once.
    """
    key = (payload.key, device, intra_op_threads)
    with _scorers_lock:
        scorer = _scorers.get(key)
        if scorer is None:
            directory = payload.materialize(_root())
            scorer = Scorer.open(
                directory, device=device, intra_op_threads=intra_op_threads, max_chunk_rows=SCORER_CHUNK_ROWS
            )
            _scorers[key] = scorer
    return scorer
