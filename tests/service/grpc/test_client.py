"""service.client against a real server: a DataFrame in, the same scores as in-process out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from service.client import Client
from service.errors import InvalidInput, ModelNotFound
from service.scorer import Scorer
from tests.service.grpc.conftest import MODEL


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "label": rng.integers(0, 2, n),  # not a feature: ignored
            "site": rng.choice(["north", "south", "east", "mars"], n).astype(object),
            "temperature": rng.normal(size=n),
            "load": rng.normal(size=n),
        },
        index=pd.RangeIndex(100, 100 + n, name="row"),
    )
    data.loc[data.index[::7], "load"] = np.nan
    data.loc[data.index[::5], "site"] = None
    return data


@pytest.fixture
def client(server):
    with Client(server.target, timeout_s=30) as client:
        yield client


@pytest.mark.slow
def test_score_frame_matches_the_in_process_scorer(server, client) -> None:
    rows = frame(250, seed=4)
    got = client.score(rows, MODEL, explain=True, latent=True, batch_rows=64)
    bundle = server.service.models.get(MODEL).path
    want = Scorer.open(bundle, device="cpu").score_frame(rows, explain=True, latent=True)
    assert got.index.equals(rows.index)
    assert list(got.columns) == list(want.columns)
    for column in want.columns:
        if not pd.api.types.is_numeric_dtype(want[column]):
            assert got[column].tolist() == want[column].tolist(), column
        else:
            np.testing.assert_allclose(
                got[column].to_numpy(dtype=float),
                want[column].to_numpy(dtype=float),
                rtol=1e-6,
                err_msg=column,
            )
    assert got.attrs == {"model": MODEL, "version": "1"}


@pytest.mark.slow
def test_alpha_and_empty_frame(client) -> None:
    rows = frame(50, seed=1)
    strict = client.score(rows, MODEL, alpha=0.001)
    loose = client.score(rows, MODEL, alpha=0.9)
    assert strict.is_anomaly.sum() <= loose.is_anomaly.sum()
    assert loose.is_anomaly.sum() > 0
    empty = client.score(rows.iloc[:0], MODEL)
    assert len(empty) == 0
    assert list(empty.columns) == ["recon_error", "neg_elbo", "kl", "p_value", "is_anomaly"]


@pytest.mark.slow
def test_client_errors_are_latentwatch_errors(client) -> None:
    with pytest.raises(ModelNotFound, match="'nope'"):
        client.score(frame(3, 0), "nope")
    with pytest.raises(InvalidInput, match="lacks feature column"):
        client.score(frame(3, 0).drop(columns="load"), MODEL)
    bad = frame(3, 0)
    bad["load"] = ["1", "x", "2"]
    with pytest.raises(InvalidInput, match="'x' is not a number"):
        client.score(bad, MODEL)


@pytest.mark.slow
def test_list_describe_and_packed_rows(client) -> None:
    assert [m.name for m in client.list_models()] == [MODEL]
    assert client.describe(MODEL).provider == "CPUExecutionProvider"
    reply = client.score_x(np.zeros((2, 3), dtype=np.float32), MODEL)
    assert list(reply.neg_elbo) == [0.0, 0.0]
