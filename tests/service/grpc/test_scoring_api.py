"""latentwatch.v1 over a real server: Score, StreamScore, ListModels, DescribeModel, health,
reflection; every number checked against the fixture graph computed in numpy."""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from service import calibration
from service._proto.latentwatch.v1 import scoring_pb2 as pb
from service._proto.latentwatch.v1 import scoring_pb2_grpc
from service.grpc import convert
from tests.service.conftest import (
    ALPHA,
    FEATURES,
    LATENT_DIM,
    calibration_scores,
    normal_rows,
    reference_outputs,
    write_bundle,
)
from tests.service.grpc.conftest import MODEL, columns_request, hold_rows_in_queue, sample_value, x_request


def expected_p_values(x: np.ndarray) -> np.ndarray:
    neg_elbo = reference_outputs(x)["neg_elbo"]
    return calibration.p_values(neg_elbo, np.asarray(calibration_scores()))


@pytest.mark.slow
def test_score_packed_rows_returns_the_contract_scores(stub) -> None:
    x = normal_rows(7, seed=3)
    x[0, 0] = 9.0  # far out: a low p-value
    reply = stub.Score(x_request(x, request_id="abc"), timeout=10)
    ref = reference_outputs(x)
    assert (reply.model, reply.version, reply.rows) == (MODEL, "1", 7)
    for name in ("recon_error", "neg_elbo", "kl"):
        np.testing.assert_allclose(np.asarray(getattr(reply, name)), ref[name], rtol=1e-6)
    p = expected_p_values(x)
    np.testing.assert_allclose(np.asarray(reply.p_value), p)
    assert list(reply.is_anomaly) == list(p < ALPHA)
    assert reply.is_anomaly[0]
    assert reply.alpha == pytest.approx(ALPHA)
    assert reply.primary_score == "neg_elbo"
    assert reply.request_id == "abc"
    # Explanations only on request.
    assert not reply.HasField("feature_scores")
    assert not reply.HasField("latent")


@pytest.mark.slow
def test_score_explain_and_latent_matrices(stub) -> None:
    x = normal_rows(4, seed=5)
    reply = stub.Score(x_request(x, explain=True, latent=True), timeout=10)
    ref = reference_outputs(x)
    features = convert.matrix_to_array(reply.feature_scores)
    assert features.shape == (4, len(FEATURES))
    np.testing.assert_allclose(features, ref["feature_scores"], rtol=1e-6)
    np.testing.assert_allclose(convert.matrix_to_array(reply.expected), ref["expected"])
    latent = convert.matrix_to_array(reply.latent)
    assert latent.shape == (4, LATENT_DIM)
    np.testing.assert_allclose(latent, ref["latent"], rtol=1e-6)


@pytest.mark.slow
def test_named_columns_match_the_packed_layout(stub) -> None:
    request = columns_request(
        {
            "temperature": ([0.5, -1.0, None], True),
            "load": ([2.0, 0.25, 1.0], True),
            "site": (["south", "unseen-site", None], False),
        }
    )
    reply = stub.Score(request, timeout=10)
    # Unseen and missing labels score as code -1, a missing number as NaN (the contract).
    x = np.array([[0.5, 2.0, 1.0], [-1.0, 0.25, -1.0], [np.nan, 1.0, -1.0]], dtype=np.float32)
    np.testing.assert_allclose(np.asarray(reply.neg_elbo), reference_outputs(x)["neg_elbo"])


@pytest.mark.slow
def test_numeric_text_and_numeric_labels_are_accepted(stub) -> None:
    request = columns_request(
        {
            "temperature": (["1.5", "2"], False),
            "load": ([0.0, 1.0], True),
            "site": (["east", "north"], False),
        }
    )
    reply = stub.Score(request, timeout=10)
    x = np.array([[1.5, 0.0, 2.0], [2.0, 1.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(np.asarray(reply.kl), reference_outputs(x)["kl"])


@pytest.mark.slow
def test_request_alpha_replaces_the_bundles(stub) -> None:
    x = normal_rows(200, seed=11)
    p = expected_p_values(x)
    loose = stub.Score(x_request(x, alpha=0.5), timeout=10)
    assert loose.alpha == pytest.approx(0.5)
    assert list(loose.is_anomaly) == list(p < 0.5)
    assert sum(loose.is_anomaly) > sum(p < ALPHA)
    # Raw scores never depend on alpha.
    default = stub.Score(x_request(x), timeout=10)
    assert list(default.neg_elbo) == list(loose.neg_elbo)


@pytest.mark.slow
def test_named_version_and_newest_default(server, stub) -> None:
    write_bundle(server.config.models / MODEL / "10", scores=[100.0] * 50)
    server.call(server.service.reload())
    x = normal_rows(3, seed=1)
    newest = stub.Score(x_request(x), timeout=10)
    assert newest.version == "10"  # numeric-aware: 10 > 1
    assert list(newest.p_value) == [1.0, 1.0, 1.0]  # every calibration score is higher
    old = stub.Score(x_request(x, version="1"), timeout=10)
    assert old.version == "1"
    np.testing.assert_allclose(np.asarray(old.p_value), expected_p_values(x))


@pytest.mark.slow
def test_list_and_describe_models(server, stub) -> None:
    listing = stub.ListModels(pb.ListModelsRequest(), timeout=10)
    assert [(m.name, m.version, list(m.versions), m.ready) for m in listing.models] == [(MODEL, "1", ["1"], True)]
    description = stub.DescribeModel(pb.DescribeModelRequest(model=MODEL), timeout=10)
    assert description.name == MODEL
    assert description.version == "1"
    assert description.provider == "CPUExecutionProvider"
    assert [f.name for f in description.features] == [f.name for f in FEATURES]
    site = description.features[2]
    assert (site.kind, list(site.categories)) == ("categorical", ["north", "south", "east"])
    assert description.latent_dim == LATENT_DIM
    assert description.primary_score == "neg_elbo"
    assert description.alpha == pytest.approx(ALPHA)
    assert description.calibration_rows == len(calibration_scores())
    assert {s.name for s in description.scores} >= {"recon_error", "neg_elbo", "p_value"}


@pytest.mark.slow
def test_stream_answers_in_order_and_survives_a_bad_batch(stub) -> None:
    batches = [normal_rows(n, seed=n) for n in (1, 5, 64, 3)]
    requests = [x_request(x, request_id=f"r{i}") for i, x in enumerate(batches)]
    requests.insert(2, x_request(np.zeros((2, 5), dtype=np.float32), request_id="bad"))
    replies = list(stub.StreamScore(iter(requests), timeout=20))
    assert [r.request_id for r in replies] == ["r0", "r1", "bad", "r2", "r3"]
    assert replies[2].WhichOneof("outcome") == "error"
    assert replies[2].error.code == "INVALID_ARGUMENT"
    assert "shape" in replies[2].error.message
    good = [r for r in replies if r.WhichOneof("outcome") == "result"]
    for reply, x in zip(good, batches, strict=True):
        assert reply.result.rows == len(x)
        np.testing.assert_allclose(np.asarray(reply.result.neg_elbo), reference_outputs(x)["neg_elbo"], rtol=1e-6)


@pytest.mark.slow
def test_a_stream_is_counted_under_its_model(server, stub) -> None:
    labels = {"model": MODEL, "method": "StreamScore", "code": "OK"}
    before = sample_value(server.registry, "latentwatch_requests_total", labels)
    list(stub.StreamScore(iter([x_request(normal_rows(3, seed=1))]), timeout=20))
    assert sample_value(server.registry, "latentwatch_requests_total", labels) == before + 1


@pytest.mark.slow
def test_stream_in_lockstep(stub) -> None:
    """A client that waits for each answer before sending the next must not stall."""
    outbox: queue.Queue = queue.Queue()

    def requests():
        while (item := outbox.get()) is not None:
            yield item

    replies = stub.StreamScore(requests(), timeout=20)
    for i in range(3):
        outbox.put(x_request(normal_rows(2, seed=i), request_id=str(i)))
        assert next(replies).request_id == str(i)
    outbox.put(None)
    assert list(replies) == []


@pytest.mark.slow
def test_health_overall_per_api_and_per_model(channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    for service in ("", "latentwatch.v1.ScoringService", "inference.GRPCInferenceService", MODEL):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == serving, service
    with pytest.raises(grpc.RpcError) as info:
        health.Check(health_pb2.HealthCheckRequest(service="no-such-model"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.slow
def test_reflection_lists_both_apis(channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=5)))
    names = {s.name for s in reply.list_services_response.service}
    assert {
        "latentwatch.v1.ScoringService",
        "inference.GRPCInferenceService",
        "grpc.health.v1.Health",
    } <= names
    # Descriptors resolve too (what grpcurl needs to build requests).
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="latentwatch.v1.ScoringService")
    reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=5)))
    assert reply.file_descriptor_response.file_descriptor_proto


@pytest.mark.slow
def test_request_id_comes_back_in_trailing_metadata(stub) -> None:
    _, call = stub.Score.with_call(
        x_request(normal_rows(1, seed=0)), metadata=(("x-request-id", "trace-42"),), timeout=10
    )
    assert ("x-request-id", "trace-42") in tuple(call.trailing_metadata())


@pytest.mark.slow
def test_concurrent_callers_get_their_own_rows_and_share_batches(start_server) -> None:
    server = start_server(max_batch_delay_s=0.01)
    hold_rows_in_queue(server)  # always wait 10 ms for company: callers do share batches
    requests = [normal_rows(1 + i % 5, seed=100 + i) for i in range(48)]
    with grpc.insecure_channel(server.target) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        with ThreadPoolExecutor(16) as pool:
            replies = list(pool.map(lambda x: stub.Score(x_request(x), timeout=20), requests))
    for x, reply in zip(requests, replies, strict=True):
        assert reply.rows == len(x)
        np.testing.assert_allclose(np.asarray(reply.neg_elbo), reference_outputs(x)["neg_elbo"], rtol=1e-6)
    labels = {"model": MODEL}
    calls = sample_value(server.registry, "latentwatch_batch_rows_count", labels)
    rows = sample_value(server.registry, "latentwatch_batch_rows_sum", labels)
    assert rows == sum(len(x) for x in requests)
    assert calls < len(requests)  # coalesced: fewer onnxruntime calls than requests
