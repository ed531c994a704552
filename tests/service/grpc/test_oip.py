"""Open Inference Protocol v2 against a real server, driven by the real ``tritonclient.grpc``.

The client runs in a subprocess (``triton_driver.py``): it registers the same protobuf
message names as the server's ``inference`` module, so the two cannot share a process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from service import calibration
from service._proto.inference import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from tests.service.conftest import ALPHA, calibration_scores, reference_outputs
from tests.service.grpc.conftest import MODEL
from tests.service.grpc.descriptors import describe_messages

DRIVER = Path(__file__).with_name("triton_driver.py")
ROWS = np.array([[0.5, -1.0, 0.0], [2.0, 0.25, 2.0], [np.nan, 1.5, 1.0], [9.0, 0.0, -1.0]], dtype=np.float32)
OUTPUTS = [
    ("recon_error", "FP32", [-1]),
    ("neg_elbo", "FP32", [-1]),
    ("kl", "FP32", [-1]),
    ("p_value", "FP64", [-1]),
    ("is_anomaly", "BOOL", [-1]),
    ("feature_scores", "FP32", [-1, 3]),
    ("expected", "FP32", [-1, 3]),
    ("latent", "FP32", [-1, 2]),
]


def drive(target: str, scenario: str) -> Any:
    run = subprocess.run(
        [sys.executable, str(DRIVER), target, scenario],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def expected(x: np.ndarray, alpha: float = ALPHA) -> dict[str, np.ndarray]:
    ref = reference_outputs(x)
    p = calibration.p_values(ref["neg_elbo"], np.asarray(calibration_scores()))
    return {**ref, "p_value": p, "is_anomaly": p < alpha}


def check_outputs(got: dict[str, Any], x: np.ndarray, names: list[str]) -> None:
    want = expected(x)
    for name in names:
        values = np.asarray(got[name]["values"], dtype=float)
        assert values.shape == want[name].shape, name
        np.testing.assert_allclose(values, np.asarray(want[name], dtype=float), rtol=1e-6)


@pytest.fixture
def target(server) -> str:
    return server.target


@pytest.mark.slow
def test_health_and_metadata(target: str) -> None:
    got = drive(target, "health")
    assert got["live"] is True
    assert got["ready"] is True
    assert got["model_ready"] is True
    assert got["version_ready"] is True
    assert got["unknown_ready"] is False
    assert got["server_name"] == "latentwatch"
    metadata = got["metadata"]
    assert metadata["name"] == MODEL
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [["x", "FP32", [-1, 3]]]
    assert [tuple(o) for o in metadata["outputs"]] == [(n, d, s) for n, d, s in OUTPUTS]
    assert "NOT_FOUND" in got["unknown_metadata"]["status"]


@pytest.mark.slow
def test_infer_with_raw_input_contents(target: str) -> None:
    got = drive(target, "raw")
    every = got["all"]
    assert every["_model_version"] == "1"
    assert every["_id"] == "req-1"
    for name, datatype, _ in OUTPUTS:
        assert every[name]["datatype"] == datatype
    check_outputs(every, ROWS, [name for name, _, _ in OUTPUTS])
    assert every["is_anomaly"]["values"][3] == 1.0  # the row at 9.0
    # Named outputs only, in the asked order, with the request's alpha.
    some = got["some"]
    assert [k for k in some if not k.startswith("_")] == ["p_value", "kl"]
    check_outputs(some, ROWS, ["p_value", "kl"])


@pytest.mark.slow
def test_infer_with_contents(target: str) -> None:
    got = drive(target, "contents")
    assert got["_raw_count"] == 0  # contents in, contents out
    check_outputs(got, ROWS, [name for name, _, _ in OUTPUTS])


@pytest.mark.slow
def test_infer_with_one_input_per_column(target: str) -> None:
    got = drive(target, "columns")
    # site: north=0, east=2, south=1, and an unseen label scores as -1 (the contract).
    x = ROWS.copy()
    x[:, 2] = [0.0, 2.0, 1.0, -1.0]
    check_outputs(got, x, ["neg_elbo", "kl", "p_value", "expected"])


def test_the_v2_proto_is_wire_compatible_with_tritonclients() -> None:
    """Every message, field number, type and method of ours exists alike in Triton's proto."""
    ours = describe_messages(grpc_predict_v2_pb2.DESCRIPTOR)
    theirs = drive("-", "descriptors")
    assert len(ours) > 20
    for name, fields in ours.items():
        assert name in theirs, name
        if isinstance(fields, list):  # a method: its request and response types
            assert fields == theirs[name], name
            continue
        for field, spec in fields.items():
            assert theirs[name].get(field) == spec, (name, field)


@pytest.mark.slow
def test_columns_in_contents_with_our_own_stub(server) -> None:
    """Per-column inputs in `contents`: INT64 and FP64 numbers, BYTES labels."""
    tensor = grpc_predict_v2_pb2.ModelInferRequest.InferInputTensor
    request = grpc_predict_v2_pb2.ModelInferRequest(
        model_name=MODEL,
        inputs=[
            tensor(name="temperature", datatype="INT64", shape=[3], contents={"int64_contents": [1, -2, 3]}),
            tensor(name="load", datatype="FP64", shape=[3, 1], contents={"fp64_contents": [0.5, 0.0, float("nan")]}),
            tensor(name="site", datatype="BYTES", shape=[3], contents={"bytes_contents": [b"east", b"", b"north"]}),
        ],
        outputs=[{"name": "neg_elbo"}, {"name": "is_anomaly"}],
    )
    with grpc.insecure_channel(server.target) as channel:
        reply = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    assert [o.name for o in reply.outputs] == ["neg_elbo", "is_anomaly"]
    assert len(reply.raw_output_contents) == 0
    x = np.array([[1, 0.5, 2], [-2, 0, -1], [3, np.nan, 0]], dtype=np.float32)
    np.testing.assert_allclose(reply.outputs[0].contents.fp32_contents, reference_outputs(x)["neg_elbo"])
    assert list(reply.outputs[1].contents.bool_contents) == list(expected(x)["is_anomaly"])


@pytest.mark.slow
def test_uint64_labels_beyond_int64_are_unseen_labels(server) -> None:
    """A categorical input of UINT64 numbers above int64's range: labels like any other."""
    tensor = grpc_predict_v2_pb2.ModelInferRequest.InferInputTensor
    request = grpc_predict_v2_pb2.ModelInferRequest(
        model_name=MODEL,
        inputs=[
            tensor(name="temperature", datatype="FP32", shape=[2]),
            tensor(name="load", datatype="FP32", shape=[2]),
            tensor(name="site", datatype="UINT64", shape=[2]),
        ],
        raw_input_contents=[
            np.asarray([1.0, 2.0], "<f4").tobytes(),
            np.asarray([0.5, 0.0], "<f4").tobytes(),
            np.asarray([2**64 - 1, 2**63], "<u8").tobytes(),
        ],
        outputs=[{"name": "neg_elbo"}],
    )
    with grpc.insecure_channel(server.target) as channel:
        reply = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    x = np.array([[1.0, 0.5, -1], [2.0, 0.0, -1]], dtype=np.float32)
    np.testing.assert_allclose(np.frombuffer(reply.raw_output_contents[0], "<f4"), reference_outputs(x)["neg_elbo"])
