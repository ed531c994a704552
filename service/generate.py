"""The generative side of a bundle, with numpy and onnxruntime only: synthetic rows and latent paths.

:func:`sample_rows` draws ``z`` from the prior N(0, I), decodes it with ``decoder.onnx`` (see
``service.bundle`` for its outputs) and draws each numeric feature from its Gaussian
(``numeric_mean``, ``numeric_std``) and each categorical feature from its probabilities.
:func:`interpolate` encodes two rows with ``model.onnx`` (their ``latent`` posterior means),
walks the straight line between them, decodes each point to its most likely row (numeric
means, most probable category) and scores that row with ``model.onnx``.

Rows come back in the training columns (manifest feature order) and types: categories as
their labels, integers as integers where the training column was integral
(``Feature.dtype == "int"``), booleans as booleans. Generated rows have no missing values;
columns the model left out of its features (``dropped_columns``) are not generated.
For ``--model ae`` the latent space has no prior, so its samples only show what the decoder
makes of N(0, I) codes; the report's synthetic-vs-training distances say how close they are.
Everything runs on CPU.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd

from service.bundle import (
    DECODER_FILE,
    DECODER_INPUT,
    NUMERIC_MEAN,
    NUMERIC_STD,
    Bundle,
    Feature,
    Manifest,
    category_probs_name,
    decoder_output_names,
    load_bundle,
)
from service.errors import BundleError, InvalidInput
from service.features import encode_frame
from service.scorer import Scorer

CHUNK_ROWS = 65536
MAX_SAMPLE_ROWS = 10_000_000


@dataclass(frozen=True)
class Decoded:
    """The decoder's distribution of each feature for ``n_rows`` latent points (raw units).

    Attributes:
        numeric_mean: ``(n_rows, n_numeric)`` mean of each numeric feature (manifest order).
        numeric_std: ``(n_rows, n_numeric)`` standard deviation of each numeric feature.
        category_probs: one ``(n_rows, n_categories)`` array per categorical feature
            (manifest order), each row summing to 1.
    """

    numeric_mean: np.ndarray
    numeric_std: np.ndarray
    category_probs: list[np.ndarray]


class Generator:
    """Samples and interpolates with one bundle; build it with :meth:`Generator.open`."""

    def __init__(self, manifest: Manifest, decoder: ort.InferenceSession, scorer: Scorer | None = None) -> None:
        self.manifest = manifest
        self._decoder = decoder
        self._scorer = scorer
        self._numeric = [f for f in manifest.features if not f.is_categorical]
        self._categorical = [(j, f) for j, f in enumerate(manifest.features) if f.is_categorical]
        self._names = [o.name for o in decoder.get_outputs()]

    @classmethod
    def open(cls, bundle: Bundle | str | os.PathLike[str]) -> Generator:
        """Load (if given a path) and verify a bundle, and open its two graphs on CPU.

        Raises:
            BundleError: the bundle is invalid, or has no ``decoder.onnx`` (trained before
                generation existed: train it again), or the decoder disagrees with the manifest.
        """
        if not isinstance(bundle, Bundle):
            bundle = load_bundle(Path(bundle))
        if bundle.decoder_path is None:
            msg = f"{bundle.path}: the bundle has no {DECODER_FILE} (it predates generation); train it again"
            raise BundleError(msg)
        return cls(
            bundle.manifest, open_decoder(bundle.decoder_path, bundle.manifest), Scorer.open(bundle, device="cpu")
        )

    def decode(self, z: np.ndarray) -> Decoded:
        """Each feature's distribution at the latent points ``z`` ``(n_rows, latent_dim)``.

        Raises:
            InvalidInput: ``z`` is not ``(n_rows, latent_dim)``.
        """
        z = np.ascontiguousarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.manifest.latent_dim:
            msg = f"z must have shape (n_rows, {self.manifest.latent_dim}), got {z.shape}"
            raise InvalidInput(msg)
        parts = [self._decoder.run(None, {DECODER_INPUT: z[s : s + CHUNK_ROWS]}) for s in range(0, len(z), CHUNK_ROWS)]
        out = {name: np.concatenate([p[k] for p in parts]) for k, name in enumerate(self._names)}
        empty = np.empty((len(z), 0), dtype=np.float32)
        return Decoded(
            numeric_mean=out.get(NUMERIC_MEAN, empty),
            numeric_std=out.get(NUMERIC_STD, empty),
            category_probs=[out[category_probs_name(j)] for j, _ in self._categorical],
        )

    def sample(self, n_rows: int, seed: int = 0) -> pd.DataFrame:
        """``n_rows`` synthetic rows from the prior, in the training columns and types.

        The same ``seed`` gives the same rows. Raises :class:`InvalidInput` for a bad ``n_rows``.
        """
        if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)) or not 1 <= n_rows <= MAX_SAMPLE_ROWS:
            msg = f"the number of rows must be a whole number from 1 to {MAX_SAMPLE_ROWS}, got {n_rows!r}"
            raise InvalidInput(msg)
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((int(n_rows), self.manifest.latent_dim)).astype(np.float32)
        decoded = self.decode(z)
        numeric = decoded.numeric_mean + decoded.numeric_std * rng.standard_normal(decoded.numeric_mean.shape)
        codes = [_draw_categories(p, rng) for p in decoded.category_probs]
        return self.to_frame(numeric, codes)

    def most_likely(self, z: np.ndarray) -> pd.DataFrame:
        """The most likely row at each latent point: numeric means, most probable categories."""
        decoded = self.decode(z)
        return self.to_frame(decoded.numeric_mean, [p.argmax(axis=1) for p in decoded.category_probs])

    def to_frame(self, numeric: np.ndarray, codes: Sequence[np.ndarray]) -> pd.DataFrame:
        """Raw numeric values ``(n_rows, n_numeric)`` and category codes to the training columns."""
        columns: dict[str, object] = {}
        numeric_columns = iter(np.asarray(numeric, dtype=np.float64).T)
        code_columns = iter(codes)
        for feature in self.manifest.features:
            if feature.is_categorical:
                columns[feature.name] = _labels(np.asarray(next(code_columns)), feature)
            else:
                columns[feature.name] = _numbers(next(numeric_columns), feature)
        return pd.DataFrame(columns)

    def interpolate(
        self, frame: pd.DataFrame, from_row: int, to_row: int, steps: int, *, source: str = "input"
    ) -> pd.DataFrame:
        """Decode ``steps`` evenly spaced points from ``from_row``'s latent mean to ``to_row``'s.

        Rows are positions in ``frame`` counted from 0. Returns one row per step: ``step``,
        ``t`` (0 at ``from_row``, 1 at ``to_row``), the features of the most likely row there
        (training columns and types), its ``neg_elbo`` (nats, higher = more anomalous), the
        primary score if that is another one, and ``p_value`` (lower = more anomalous).

        Raises:
            InvalidInput: a row out of range (naming it and the table's length), fewer than 2
                steps, or a row whose values cannot be encoded.
        """
        if self._scorer is None:
            msg = "interpolation needs model.onnx: open the generator with Generator.open(bundle)"
            raise BundleError(msg)
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 2 <= steps <= 100_000:
            msg = f"--steps must be a whole number from 2 to 100000, got {steps!r}"
            raise InvalidInput(msg)
        x = np.concatenate(
            [self._encode_row(frame, row, flag, source) for row, flag in ((from_row, "--from"), (to_row, "--to"))]
        )
        latent = self._scorer.run(x)["latent"].astype(np.float64)  # (2, L) posterior means
        t = np.linspace(0.0, 1.0, int(steps))
        z = (1.0 - t)[:, None] * latent[0] + t[:, None] * latent[1]  # (steps, L)
        rows = self.most_likely(z)
        scores = self._scorer.score(encode_frame(rows, self.manifest.features, source="decoded path").x)
        primary = self.manifest.primary_score
        extra = {"neg_elbo": scores.neg_elbo, primary: scores.primary, "p_value": scores.p_value}
        head = pd.DataFrame({_free("step", rows): np.arange(len(t)), _free("t", rows): t})
        tail = pd.DataFrame({_free(name, rows): values for name, values in extra.items()})
        return pd.concat([head, rows, tail], axis=1)

    def _encode_row(self, frame: pd.DataFrame, row: int, flag: str, source: str) -> np.ndarray:
        if isinstance(row, bool) or not isinstance(row, (int, np.integer)) or not 0 <= row < len(frame):
            msg = f"{flag} row {row!r} is out of range: {source} has {len(frame)} rows, numbered 0 to {len(frame) - 1}"
            raise InvalidInput(msg)
        return encode_frame(frame.iloc[[int(row)]], self.manifest.features, source=source, row_offset=int(row)).x


def open_decoder(path: Path, manifest: Manifest) -> ort.InferenceSession:
    """An onnxruntime CPU session on ``decoder.onnx``, checked against the manifest.

    Raises:
        BundleError: onnxruntime cannot load it, or its input or outputs disagree.
    """
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's exception types share no base
        msg = f"{path}: onnxruntime cannot load the decoder: {err}"
        raise BundleError(msg) from None
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != DECODER_INPUT or inputs[0].shape[1:] != [manifest.latent_dim]:
        found = [(i.name, i.shape) for i in inputs]
        msg = f"{path}: the decoder's inputs are {found}, expected one 'z' of width {manifest.latent_dim}"
        raise BundleError(msg)
    names = [o.name for o in session.get_outputs()]
    if names != decoder_output_names(manifest.features):
        msg = f"{path}: the decoder's outputs are {names}, expected {decoder_output_names(manifest.features)}"
        raise BundleError(msg)
    return session


def sample_rows(bundle: Bundle | str | os.PathLike[str], n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` synthetic normal rows drawn from the bundle's prior and decoder (see the module doc)."""
    return Generator.open(bundle).sample(n, seed)


def interpolate(
    bundle: Bundle | str | os.PathLike[str], frame: pd.DataFrame, from_row: int, to_row: int, steps: int
) -> pd.DataFrame:
    """The decoded straight latent path between two rows of ``frame`` (see :meth:`Generator.interpolate`)."""
    return Generator.open(bundle).interpolate(frame, from_row, to_row, steps)


def _draw_categories(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One code per row drawn from ``probs`` ``(n_rows, K)`` by inverse CDF."""
    cumulative = np.cumsum(probs.astype(np.float64), axis=1)
    u = rng.random((len(probs), 1)) * cumulative[:, -1:]
    return np.minimum((cumulative <= u).sum(axis=1), probs.shape[1] - 1)


def _numbers(values: np.ndarray, feature: Feature) -> np.ndarray:
    if feature.dtype == "int":
        return np.rint(values).astype(np.int64)
    if feature.dtype == "bool":
        return values >= 0.5
    return values


def _labels(codes: np.ndarray, feature: Feature) -> np.ndarray:
    """Category codes to labels in the training column's type."""
    labels = np.asarray(feature.categories, dtype=object)[codes.astype(np.int64)]
    if feature.dtype == "bool":
        return np.array([str(v) == "True" for v in labels], dtype=bool)
    if feature.dtype in ("int", "float"):
        try:
            values = np.array([float(v) for v in labels], dtype=np.float64)
        except ValueError:  # a label that is not a number: keep the labels
            return labels
        return np.rint(values).astype(np.int64) if feature.dtype == "int" else values
    return labels


def _free(name: str, taken: pd.DataFrame) -> str:
    """``name``, with underscores appended while a feature column already has it."""
    while name in taken.columns:
        name += "_"
    return name


# --- command line (parsed in service.cli) -----------------------------------------------------


def sample_command(args: argparse.Namespace) -> int:
    """``latentwatch sample --model DIR --rows N --output PATH [--seed N]``."""
    from service.tables import write_table

    frame = sample_rows(args.model, args.rows, seed=args.seed)
    path = write_table(frame, args.output)
    print(f"wrote {len(frame)} synthetic rows ({len(frame.columns)} columns) to {path}")
    return 0


def interpolate_command(args: argparse.Namespace) -> int:
    """``latentwatch interpolate --model DIR --data PATH --from ROW --to ROW --steps K [--output PATH]``."""
    from service.tables import read_table, write_table

    frame = read_table(args.data)
    path = Generator.open(args.model).interpolate(frame, args.from_row, args.to_row, args.steps, source=str(args.data))
    if args.output:
        print(f"wrote {len(path)} steps to {write_table(path, args.output)}")
    else:
        with pd.option_context("display.max_columns", None, "display.width", 200):
            print(path.to_string(index=False))
    return 0
