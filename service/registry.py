"""The model repository: ``DIR/<model>/<version>/`` bundles, loaded, verified and swapped.

Every version directory holding a ``manifest.json`` and a ``model.onnx`` is a candidate
(hidden directories, starting with ``.``, are ignored, so a trainer can write ``.tmp-*`` and
rename). A model directory that is itself a bundle (``DIR/<model>/manifest.json``) is one
version, labelled with the manifest's version. Versions sort numeric-aware (``2`` < ``10``,
``v1.9`` < ``v1.10``); a request naming no version gets the newest one that loaded.

:meth:`ModelRegistry.reload` (run at start, by polling and on SIGHUP) loads each new or
changed version fully, off the event loop: read and verify the bundle, open the onnxruntime
session, run the warm-up; only then does the version become visible, by swapping one
dictionary reference. A version is "changed" when any of its files is (see
:mod:`service.repository`).

A version that fails to load while its files are still being written (one changed during
the load, or within the last ``settle_s`` seconds) is *pending*: logged, not counted, and
retried at every reload (polling retries it every ``settle_s`` even when the repository is
not polled), so a bundle copied in place file by file is served once the copy completes. A
version that fails once its files have settled, or for a reason that is not about its files
(the device), is refused: logged, counted in ``latentwatch_model_load_failures_total`` and
remembered by its fingerprint, so it is retried only once a file changes; the versions
already loaded keep serving. Requests hold a reference to the :class:`LoadedModel` they
started with, so those in flight when a version is replaced or removed finish on it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from service.batching import MicroBatcher
from service.bundle import Manifest
from service.errors import BundleError, LatentwatchError, ModelNotFound, quote, quote_list
from service.metrics import Metrics
from service.repository import Fingerprint, Found, fingerprint, last_change, scan
from service.scorer import Scorer

logger = logging.getLogger(__name__)

# A version whose files changed less than this long ago (seconds) and fails to load is taken
# for a copy in progress: retried, not counted.
SETTLE_S = 5.0
# Shortest wait between two retries of a pending version (seconds).
RETRY_MIN_S = 0.1
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
    pending: list[tuple[str, str, str]] = field(default_factory=list)  # still being written (+ why not loaded)

    @property
    def changed(self) -> bool:
        return bool(self.loaded or self.removed)


@functools.lru_cache(maxsize=4096)
def version_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """Numeric-aware sort key: digit runs compare as numbers, the rest as text (cached: every request asks)."""
    parts = re.split(r"(\d+)", version)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p)


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
        settle_s: how long a version's files must have stayed unchanged before a failure to
            load it counts as a refusal (seconds).
        clock: the time now, on ``time.time()``'s scale (files' change times are compared
            with it).
    """

    def __init__(
        self,
        root: Path,
        *,
        open_scorer: OpenScorer,
        make_batcher: MakeBatcher,
        metrics: Metrics | None = None,
        load_executor: Executor | None = None,
        settle_s: float = SETTLE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root)
        self._open_scorer = open_scorer
        self._make_batcher = make_batcher
        self._metrics = metrics
        self._load_executor = load_executor or ThreadPoolExecutor(1, "latentwatch-load")
        # name -> version -> model; replaced as a whole (copy on write), never mutated.
        self._models: dict[str, dict[str, LoadedModel]] = {}
        self._settle_s = settle_s
        self._clock = clock
        self._refused: dict[tuple[str, str], Fingerprint] = {}
        # Versions still being written: their fingerprint and when it was first seen.
        self._pending: dict[tuple[str, str], tuple[Fingerprint, float]] = {}
        self._pending_seen: asyncio.Event | None = None
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

    def scan(self) -> Found:
        """The bundles on disk now: model -> version -> (directory, fingerprint)."""
        return scan(self.root)

    @property
    def pending(self) -> list[tuple[str, str]]:
        """Versions that did not load while their files were still being written."""
        return sorted(self._pending)

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
            self._refused = {key: fp for key, fp in self._refused.items() if key[1] in found.get(key[0], {})}
            self._pending = {key: seen for key, seen in self._pending.items() if key[1] in found.get(key[0], {})}
            if self._pending:
                self._pending_event().set()
            if report.changed:
                for callback in self._listeners:
                    callback(self)
            return report

    async def poll(self, interval_s: float) -> None:
        """Reload every ``interval_s`` seconds (0: only when a version is pending) and, while
        one is, every ``settle_s`` seconds, until cancelled; errors are logged."""
        while True:
            if self._pending:
                delay = self._settle_s if interval_s <= 0 else min(interval_s, self._settle_s)
            elif interval_s > 0:
                delay = interval_s
            else:
                event = self._pending_event()
                event.clear()
                await event.wait()  # a reload (SIGHUP) left a version pending
                continue
            await asyncio.sleep(max(delay, RETRY_MIN_S))
            try:
                await self.reload()
            except Exception:
                logger.exception("reloading the model repository %s failed", self.root)

    def _pending_event(self) -> asyncio.Event:
        if self._pending_seen is None:
            self._pending_seen = asyncio.Event()
        return self._pending_seen

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
            await self._load_failed(name, version, path, fingerprint, err, report)
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
        self._pending.pop((name, version), None)
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

    async def _load_failed(
        self, name: str, version: str, path: Path, fp: Fingerprint, err: Exception, report: ReloadReport
    ) -> None:
        """A version did not load: pending while its files are being written, else refused."""
        reason = err.message if isinstance(err, LatentwatchError) else repr(err)
        if await self._being_written((name, version), path, fp, err):
            logger.info(
                "model %s version %s is not complete yet (%s); retrying until its files stop changing",
                name,
                version,
                reason,
            )
            report.pending.append((name, version, reason))
            return
        self._pending.pop((name, version), None)
        if isinstance(err, LatentwatchError):
            logger.error("refused model %s version %s: %s", name, version, reason)
        else:
            logger.exception("refused model %s version %s", name, version)
        self._refused[(name, version)] = fp
        if self._metrics is not None:
            self._metrics.load_failed(name)
        report.failed.append((name, version, reason))
        report.errors.append(err)

    async def _being_written(self, key: tuple[str, str], path: Path, fp: Fingerprint, err: Exception) -> bool:
        """Whether a failure to load may come from a copy in progress: the bundle's files were
        the problem (not the device), and they changed during the load, or both their last
        change and this registry's first sight of them as they are now are less than
        ``settle_s`` seconds old.

        The first sight bounds the wait where file times cannot be trusted (a file server's
        clock ahead of this one's)."""
        if not isinstance(err, (BundleError, OSError)):
            return False
        after = await asyncio.get_running_loop().run_in_executor(self._load_executor, fingerprint, path)
        now = self._clock()
        if after != fp:
            self._pending[key] = (after or fp, now)
            return True
        seen, first_seen = self._pending.get(key, (fp, now))
        if seen != fp:
            first_seen = now
        self._pending[key] = (fp, first_seen)
        return now - last_change(fp) < self._settle_s and now - first_seen < self._settle_s

    def _drop_vanished(self, found: Found, report: ReloadReport) -> None:
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
