"""The baseline detectors: scikit-learn's and PyOD's, each with its default settings.

Each ``fit_NAME(x, seed)`` fits on the standardized (and one-hot) training matrix of
``detection_data.baseline_matrices`` and returns a scorer: test matrix -> one score per row,
higher = more anomalous (scikit-learn's ``score_samples`` is negated).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import numpy as np
from detection_data import Dataset, baseline_matrices, detection_metrics, split_indices, torch_setup
from detection_records import Record

SKLEARN_DETECTORS = ("iforest", "ocsvm", "lof", "knn", "pca")
PYOD_DETECTORS = ("pyod-vae", "pyod-ae")
BASELINES = SKLEARN_DETECTORS + PYOD_DETECTORS
OCSVM_MAX_ROWS = 5_000

Scorer = Callable[[np.ndarray], np.ndarray]


def fit_iforest(x: np.ndarray, seed: int) -> Scorer:
    from sklearn.ensemble import IsolationForest

    model = IsolationForest(random_state=seed).fit(x)
    return lambda t: -model.score_samples(t)


def fit_ocsvm(x: np.ndarray, seed: int) -> Scorer:
    from sklearn.svm import OneClassSVM

    model = OneClassSVM(kernel="rbf", gamma="scale", nu=0.1).fit(x[:OCSVM_MAX_ROWS])
    return lambda t: -model.score_samples(t)


def fit_lof(x: np.ndarray, seed: int) -> Scorer:
    from sklearn.neighbors import LocalOutlierFactor

    model = LocalOutlierFactor(n_neighbors=20, novelty=True).fit(x)
    return lambda t: -model.score_samples(t)


def fit_knn(x: np.ndarray, seed: int) -> Scorer:
    """Mean distance to the 5 nearest training rows."""
    from sklearn.neighbors import NearestNeighbors

    model = NearestNeighbors(n_neighbors=5).fit(x)
    return lambda t: model.kneighbors(t)[0].mean(axis=1)


def fit_pca(x: np.ndarray, seed: int) -> Scorer:
    """Squared reconstruction error from the components keeping 95% of the variance."""
    from sklearn.decomposition import PCA

    model = PCA(n_components=0.95, svd_solver="full").fit(x)
    return lambda t: np.square(t - model.inverse_transform(model.transform(t))).sum(axis=1)


def fit_pyod(name: str, x: np.ndarray, seed: int) -> Scorer:
    """PyOD's ``VAE`` or ``AutoEncoder`` with its defaults (verbose off, seeded)."""
    torch_setup(seed)
    if name == "pyod-vae":
        from pyod.models.vae import VAE as Model
    else:
        from pyod.models.auto_encoder import AutoEncoder as Model
    model = Model(random_state=seed, verbose=0).fit(x.astype(np.float32))
    return lambda t: model.decision_function(t.astype(np.float32))


BASELINE_FITS: dict[str, Callable[[np.ndarray, int], Scorer]] = {
    "iforest": fit_iforest,
    "ocsvm": fit_ocsvm,
    "lof": fit_lof,
    "knn": fit_knn,
    "pca": fit_pca,
    "pyod-vae": functools.partial(fit_pyod, "pyod-vae"),
    "pyod-ae": functools.partial(fit_pyod, "pyod-ae"),
}


def run_baseline(detector: str, ds: Dataset, seed: int) -> Record:
    """Fit ``detector`` on the train rows of ``ds`` and score its test rows."""
    train, test = split_indices(ds.y, seed)
    x_train, x_test = baseline_matrices(ds.frame.iloc[train], ds.frame.iloc[test])
    start = time.perf_counter()
    scorer = BASELINE_FITS[detector](x_train, seed)
    fitted = time.perf_counter()
    scores = scorer(x_test)
    done = time.perf_counter()
    record = detection_metrics(ds.y[test], scores)
    record |= {"fit_seconds": fitted - start, "score_seconds": done - fitted}
    return record
