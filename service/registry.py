"""The model repository: ``DIR/<model>/<version>/`` bundles, loaded, verified and swapped.

Every version directory holding a ``manifest.json`` is a candidate (hidden directories,
starting with ``.``, are ignored, so a trainer can write ``.tmp-*`` and rename). A model
directory that is itself a bundle (``DIR/<model>/manifest.json``) is one version, labelled
with the manifest's version. Versions sort numeric-aware (``2`` < ``10``, ``v1.9`` <
``v1.10``); a request naming no version gets the newest one that loaded.

:meth:`ModelRegistry.reload` (run at start, by polling and on SIGHUP) loads each new or
changed version fully, off the event loop: read and verify the bundle, open the onnxruntime
session, run the warm-up; only then does the version become visible, by swapping one
dictionary reference. A version that fails is refused: logged, counted in
``latentwatch_model_load_failures_total`` and remembered by its files' size and time, so it
is retried only once they change; the versions already loaded keep serving. Requests hold a
reference to the :class:`LoadedModel` they started with, so those in flight when a version
is replaced or removed finish on it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from service.batching import MicroBatcher
from service.bundle import MANIFEST_FILE, ONNX_FILE, Manifest
from service.errors import LatentwatchError, ModelNotFound, quote, quote_list
from service.metrics import Metrics
from service.scorer import Scorer

logger = logging.getLogger(__name__)

Fingerprint = tuple[int, ...]
OpenScorer = Callable[[Path], Scorer]
MakeBatcher = Callable[[str, Scorer], MicroBatcher]


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """One model version, ready to score: its scorer and micro-batcher.

    Compared and hashed by identity: a reloaded version is a different object.
    """

    name: str
    version: str
    scorer: Scorer
    batcher: MicroBatcher
    path: Path
    fingerprint: Fingerprint

    @property
    def manifest(self) -> Manifest:
        return self.scorer.manifest

    @property
    def provider(self) -> str:
        return self.scorer.provider


@dataclass
class ReloadReport:
    """What one :meth:`ModelRegistry.reload` did, as ``(model, version)`` pairs."""

    loaded: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (+ the reason)
    errors: list[Exception] = field(default_factory=list)  # one per failed entry
    removed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.loaded or self.removed)


@functools.lru_cache(maxsize=4096)
def version_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """Numeric-aware sort key: digit runs compare as numbers, the rest as text (cached: every request asks)."""
    parts = re.split(r"(\d+)", version)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p)


def _fingerprint(directory: Path) -> Fingerprint | None:
    """Size and modification time of the bundle's two files; None if one is missing."""
    try:
        stats = [(directory / name).stat() for name in (MANIFEST_FILE, ONNX_FILE)]
    except OSError:
        return None
    return tuple(v for s in stats for v in (s.st_size, s.st_mtime_ns))


def _manifest_version(directory: Path) -> str:
    try:
        version = json.loads((directory / MANIFEST_FILE).read_text()).get("version")
    except (OSError, ValueError, AttributeError):
        version = None
    return str(version) if version else "1"


class ModelRegistry:
    """Models by name and version, read from ``root``.

    Args:
        root: the repository directory.
        open_scorer: opens, verifies and warms up one bundle directory (``Scorer.open``
            with the service's device and thread settings); runs in ``load_executor``.
        make_batcher: the micro-batcher for a freshly opened scorer of a named model.
        metrics: where loads, failures and ``latentwatch_model_info`` are recorded.
        load_executor: where bundles load (one thread by default), so loading never blocks
            the event loop or the inference threads.
    """

    def __init__(
        self,
        root: Path,
        *,
        open_scorer: OpenScorer,
        make_batcher: MakeBatcher,
        metrics: Metrics | None = None,
        load_executor: Executor | None = None,
    ) -> None:
        self.root = Path(root)
        self._open_scorer = open_scorer
        self._make_batcher = make_batcher
        self._metrics = metrics
        self._load_executor = load_executor or ThreadPoolExecutor(1, "latentwatch-load")
        # name -> version -> model; replaced as a whole (copy on write), never mutated.
        self._models: dict[str, dict[str, LoadedModel]] = {}
        self._refused: dict[tuple[str, str], Fingerprint] = {}
        self._lock: asyncio.Lock | None = None
        self._listeners: list[Callable[[ModelRegistry], None]] = []

    # -- lookups (lock-free: they read one reference) -------------------------------------

    def get(self, name: str, version: str = "") -> LoadedModel:
        """The named version, or the newest loaded one when ``version`` is empty.

        Raises:
            ModelNotFound: naming the model or version, and what is available.
        """
        versions = self._models.get(name)
        if not versions:
            known = sorted(self._models)
            msg = f"model {quote(name)} is not served here; models: {quote_list(known)}"
            raise ModelNotFound(msg)
        if not version:
            return versions[max(versions, key=version_key)]
        model = versions.get(version)
        if model is None:
            loaded = sorted(versions, key=version_key)
            msg = f"model {quote(name)} has no version {quote(version)} loaded; versions: {quote_list(loaded)}"
            raise ModelNotFound(msg)
        return model

    def names(self) -> list[str]:
        return sorted(self._models)

    def versions(self, name: str) -> list[str]:
        """Loaded versions of ``name``, oldest first (empty if unknown)."""
        return sorted(self._models.get(name, {}), key=version_key)

    def has(self, name: str) -> bool:
        return name in self._models

    def all(self) -> list[LoadedModel]:
        """Every loaded version, by name then version."""
        return [self._models[name][v] for name in self.names() for v in self.versions(name)]

    def queued_rows(self) -> dict[str, int]:
        """Rows waiting in each model's micro-batchers (every loaded version), by model."""
        return {
            name: sum(model.batcher.queued_rows for model in versions.values())
            for name, versions in self._models.items()
        }

    @property
    def ready(self) -> bool:
        """True once at least one model version is loaded."""
        return bool(self._models)

    def add_listener(self, callback: Callable[[ModelRegistry], None]) -> None:
        """Call ``callback(registry)`` after every reload that changed what is served."""
        self._listeners.append(callback)

    # -- loading --------------------------------------------------------------------------

    def scan(self) -> dict[str, dict[str, tuple[Path, Fingerprint]]]:
        """The bundles on disk now: model -> version -> (directory, fingerprint)."""
        found: dict[str, dict[str, tuple[Path, Fingerprint]]] = {}
        if not self.root.is_dir():
            logger.warning("model repository %s is not a directory", self.root)
            return found
        for model_dir in sorted(self.root.iterdir()):
            if not model_dir.is_dir() or model_dir.name.startswith("."):
                continue
            versions: dict[str, tuple[Path, Fingerprint]] = {}
            if (model_dir / MANIFEST_FILE).is_file():
                fingerprint = _fingerprint(model_dir)
                if fingerprint is not None:
                    versions[_manifest_version(model_dir)] = (model_dir, fingerprint)
            else:
                for version_dir in sorted(model_dir.iterdir()):
                    if not version_dir.is_dir() or version_dir.name.startswith("."):
                        continue
                    fingerprint = _fingerprint(version_dir)
                    if fingerprint is None:
                        logger.debug("skipping %s: no complete bundle (yet)", version_dir)
                        continue
                    versions[version_dir.name] = (version_dir, fingerprint)
            if versions:
                found[model_dir.name] = versions
        return found

    async def reload(self) -> ReloadReport:
        """Load new or changed versions, drop vanished ones; see the module docstring."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            report = ReloadReport()
            found = await asyncio.get_running_loop().run_in_executor(self._load_executor, self.scan)
            for name in sorted(found):
                for version in sorted(found[name], key=version_key):
                    path, fingerprint = found[name][version]
                    await self._load_if_new(name, version, path, fingerprint, report)
            self._drop_vanished(found, report)
            self._refused = {
                key: fp for key, fp in self._refused.items() if key[0] in found and key[1] in found[key[0]]
            }
            if report.changed:
                for callback in self._listeners:
                    callback(self)
            return report

    async def poll(self, interval_s: float) -> None:
        """Reload every ``interval_s`` seconds until cancelled; errors are logged."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.reload()
            except Exception:
                logger.exception("reloading the model repository %s failed", self.root)

    async def _load_if_new(
        self, name: str, version: str, path: Path, fingerprint: Fingerprint, report: ReloadReport
    ) -> None:
        current = self._models.get(name, {}).get(version)
        if current is not None and current.fingerprint == fingerprint:
            return
        if self._refused.get((name, version)) == fingerprint:
            return
        loop = asyncio.get_running_loop()
        try:
            scorer = await loop.run_in_executor(self._load_executor, self._open_scorer, path)
        except Exception as err:
            reason = err.message if isinstance(err, LatentwatchError) else repr(err)
            if isinstance(err, LatentwatchError):
                logger.error("refused model %s version %s: %s", name, version, reason)
            else:
                logger.exception("refused model %s version %s", name, version)
            self._refused[(name, version)] = fingerprint
            if self._metrics is not None:
                self._metrics.load_failed(name)
            report.failed.append((name, version, reason))
            report.errors.append(err)
            return
        loaded = LoadedModel(
            name=name,
            version=version,
            scorer=scorer,
            batcher=self._make_batcher(name, scorer),
            path=path,
            fingerprint=fingerprint,
        )
        self._refused.pop((name, version), None)
        self._models = {**self._models, name: {**self._models.get(name, {}), version: loaded}}
        if current is not None:
            self._record_unload(current)
        if self._metrics is not None:
            self._metrics.model_loaded(
                name, version, scorer.manifest.model_type, scorer.provider, alpha=scorer.manifest.calibration.alpha
            )
        logger.info(
            "serving model %s version %s from %s on %s%s",
            name,
            version,
            path,
            scorer.provider,
            " (replaced)" if current else "",
        )
        report.loaded.append((name, version))

    def _drop_vanished(self, found: dict[str, dict[str, tuple[Path, Fingerprint]]], report: ReloadReport) -> None:
        models = {}
        for name, versions in self._models.items():
            kept = {v: m for v, m in versions.items() if v in found.get(name, {})}
            for version, model in versions.items():
                if version not in kept:
                    self._record_unload(model)
                    report.removed.append((name, version))
                    logger.info("model %s version %s is gone from disk: unloaded", name, version)
            if kept:
                models[name] = kept
        self._models = models

    def _record_unload(self, model: LoadedModel) -> None:
        if self._metrics is not None:
            self._metrics.model_unloaded(model.name, model.version, model.manifest.model_type, model.provider)
