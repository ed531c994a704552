"""A small Python client for ``latentwatch serve``: score a DataFrame, get a DataFrame back.

>>> from service.client import Client
>>> with Client("localhost:50051") as client:          # doctest: +SKIP
...     scores = client.score(frame, model="sensors")
...     scores[scores.is_anomaly]

The client asks the server for the model's features once, sends only those columns (so
the frame may hold others, such as a label), as named columns: numbers for numeric
features, labels for categorical ones; the server does the encoding. Large frames go in
chunks of ``batch_rows`` over one stream, several chunks in flight at once. The result
has the frame's index and the columns of ``Scorer.score_frame``: ``recon_error``,
``neg_elbo``, ``kl`` (higher = more anomalous), ``p_value`` (lower = more anomalous),
``is_anomaly``, and with ``explain`` ``feature_score_<name>`` / ``expected_<name>``
(labels for categorical features), with ``latent`` ``latent_<i>``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import grpc
import numpy as np
import pandas as pd

from service._proto.latentwatch.v1 import scoring_pb2 as pb
from service._proto.latentwatch.v1 import scoring_pb2_grpc
from service.columns import ROW_COLUMNS, score_columns
from service.errors import (
    InvalidInput,
    LatentwatchError,
    ModelNotFound,
    ResourceExhausted,
)
from service.grpc import convert

_ERRORS: dict[str, type[LatentwatchError]] = {
    "INVALID_ARGUMENT": InvalidInput,
    "NOT_FOUND": ModelNotFound,
    "RESOURCE_EXHAUSTED": ResourceExhausted,
}


class Client:
    """A connection to one latentwatch server.

    Args:
        target: ``host:port`` of the gRPC endpoint.
        timeout_s: deadline of each call (the whole stream for :meth:`score`), seconds.
        token: bearer token, when the server requires one.
        tls_ca: a CA bundle (PEM) to verify the server with; turns TLS on.
        tls_cert: a client certificate and ``tls_key`` its key (PEM), for mutual TLS.
        max_message_bytes: the largest message to send or receive.
    """

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        timeout_s: float | None = 60.0,
        token: str | None = None,
        tls_ca: Path | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if tls_ca is not None or tls_cert is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=tls_ca.read_bytes() if tls_ca else None,
                private_key=tls_key.read_bytes() if tls_key else None,
                certificate_chain=tls_cert.read_bytes() if tls_cert else None,
            )
            self._channel = grpc.secure_channel(target, credentials, options)
        else:
            self._channel = grpc.insecure_channel(target, options)
        self._stub = scoring_pb2_grpc.ScoringServiceStub(self._channel)
        self._descriptions: dict[tuple[str, str], pb.ModelDescription] = {}

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def list_models(self) -> list[pb.ModelSummary]:
        """The models served, each with its newest version and every loaded one."""
        return list(self._call(self._stub.ListModels, pb.ListModelsRequest()).models)

    def describe(self, model: str, version: str = "") -> pb.ModelDescription:
        """Features, scores, alpha and provider of a model version (cached per client)."""
        key = (model, version)
        if key not in self._descriptions:
            request = pb.DescribeModelRequest(model=model, version=version)
            self._descriptions[key] = self._call(self._stub.DescribeModel, request)
        return self._descriptions[key]

    def score(
        self,
        frame: pd.DataFrame,
        model: str,
        *,
        version: str = "",
        alpha: float | None = None,
        explain: bool = False,
        latent: bool = False,
        batch_rows: int = 4096,
    ) -> pd.DataFrame:
        """Score every row of ``frame`` (it must hold the model's feature columns).

        Returns:
            One row per input row, same index; see the module docstring for the columns.
            ``attrs["model"]`` / ``attrs["version"]`` name what scored the rows.

        Raises:
            InvalidInput, ModelNotFound, ResourceExhausted: the server's answer, with its
                message; other failures (UNAVAILABLE: no connection, or the server is
                not ready) as ``grpc.RpcError``.
        """
        if batch_rows < 1:
            msg = f"batch_rows must be at least 1, got {batch_rows}"
            raise ValueError(msg)
        description = self.describe(model, version)
        # Pin the version for every chunk, so a reload midway cannot mix versions.
        version = description.version
        features = list(description.features)
        missing = [f.name for f in features if f.name not in frame.columns]
        if missing:
            msg = (
                f"model {model!r}: the frame lacks feature column(s) {missing}; "
                f"the model's features are {[f.name for f in features]}"
            )
            raise InvalidInput(msg)

        def requests() -> Iterator[pb.ScoreRequest]:
            for start in range(0, len(frame), batch_rows):
                chunk = frame.iloc[start : start + batch_rows]
                columns = [_column(f, chunk[f.name]) for f in features]
                request = pb.ScoreRequest(
                    model=model,
                    version=version,
                    columns=pb.Columns(columns=columns),
                    explain=explain,
                    latent=latent,
                    request_id=str(start),
                )
                if alpha is not None:
                    request.alpha = alpha
                yield request

        replies = []
        if len(frame):
            stream = self._stub.StreamScore(requests(), timeout=self.timeout_s, metadata=self._metadata)
            try:
                for reply in stream:
                    if reply.WhichOneof("outcome") == "error":
                        _raise(reply.error.code, reply.error.message)
                    replies.append(reply.result)
            except grpc.RpcError as err:
                _raise_rpc(err)
        result = _frame(replies, features, description, explain=explain, latent=latent)
        result.index = frame.index
        result.attrs.update(model=description.name, version=description.version)
        return result

    def score_x(self, x: np.ndarray, model: str, *, version: str = "", alpha: float | None = None) -> pb.ScoreResponse:
        """Score rows already in the bundle's ``x`` layout (float32 ``(n_rows, n_features)``)."""
        request = pb.ScoreRequest(model=model, version=version, x=convert.array_to_tensor(x))
        if alpha is not None:
            request.alpha = alpha
        return self._call(self._stub.Score, request)

    def _call(self, method: grpc.UnaryUnaryMultiCallable, request: object) -> object:
        try:
            return method(request, timeout=self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as err:
            _raise_rpc(err)
            raise  # unreachable: _raise_rpc always raises


def _column(feature: pb.FeatureDescription, series: pd.Series) -> pb.Column:
    """A numeric column as numbers (NaN = missing), anything else as text (None = missing).

    Numbers keep their meaning for categorical features too: the server reads a whole
    float such as ``3.0`` as the label ``3``, as training did. Booleans go as text
    (``True``/``False``), the labels training stored.
    """
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = series.astype(float).to_numpy(dtype=float, na_value=np.nan)
        return convert.column_message(feature.name, values, numeric=True)
    values = series.astype(object).where(series.notna(), None).to_numpy()
    return convert.column_message(feature.name, values, numeric=False)


def _raise(code: str, message: str) -> None:
    raise _ERRORS.get(code, LatentwatchError)(message)


def _raise_rpc(err: grpc.RpcError) -> None:
    code = err.code() if hasattr(err, "code") else None
    name = code.name if isinstance(code, grpc.StatusCode) else ""
    if name in _ERRORS:
        raise _ERRORS[name](err.details()) from None
    raise err


_ROW_TYPES = dict.fromkeys(ROW_COLUMNS, np.float32) | {"p_value": np.float64, "is_anomaly": bool}


def _frame(
    replies: Sequence[pb.ScoreResponse],
    features: Sequence[pb.FeatureDescription],
    description: pb.ModelDescription,
    *,
    explain: bool,
    latent: bool,
) -> pd.DataFrame:
    def joined(name: str, dtype: type) -> np.ndarray:
        parts = [np.asarray(getattr(r, name), dtype=dtype) for r in replies]
        return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)

    def stacked(name: str, width: int) -> np.ndarray:
        parts = [convert.matrix_to_array(getattr(r, name)) for r in replies]
        return np.concatenate(parts) if parts else np.empty((0, width), dtype=np.float32)

    scores = {name: joined(name, dtype) for name, dtype in _ROW_TYPES.items()}
    if explain:
        scores["feature_scores"] = stacked("feature_scores", len(features))
        scores["expected"] = stacked("expected", len(features))
    if latent:
        scores["latent"] = stacked("latent", int(description.latent_dim))
    return pd.DataFrame(score_columns(scores, features, explain=explain, latent=latent))
