"""Numbers beyond float32's range: the service refuses them for the batch job's reason."""

from __future__ import annotations

import grpc
import pandas as pd
import pytest

from service._proto.latentwatch.v1 import scoring_pb2_grpc
from service.bundle import Feature
from service.features import encode_frame
from tests.service.grpc.conftest import columns_request


@pytest.mark.parametrize("value", [1e39, -1e300])
@pytest.mark.slow
def test_a_number_float32_cannot_hold_is_refused_as_in_batch(
    stub: scoring_pb2_grpc.ScoringServiceStub, value: float
) -> None:
    reason = f"column 'temperature': {value:g} is beyond float32's range (±3.403e+38)"
    request = columns_request(
        {"temperature": ([1.0, value], True), "load": ([0.5, 0.5], True), "site": (["north", "east"], False)}
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.Score(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"row 1, {reason}" in info.value.details()

    # What a batch job does with the same value: the row is kept, with the same reason.
    frame = pd.DataFrame({"temperature": [1.0, value]})
    encoded = encode_frame(frame, [Feature(name="temperature", kind="numeric")], strict=False)
    assert encoded.errors == [None, reason]
