"""Drive a V2 endpoint with the real ``tritonclient.grpc``; print what came back as JSON.

Run in its own process by ``test_oip.py``: ``tritonclient`` and the server's own
``inference`` protobuf module register the same message names, so one process cannot
import both. Usage: ``python triton_driver.py HOST:PORT SCENARIO``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as triton
from descriptors import describe_messages  # this folder is sys.path[0] when run as a script
from tritonclient.utils import InferenceServerException

MODEL = "sensors"
ROWS = np.array([[0.5, -1.0, 0.0], [2.0, 0.25, 2.0], [np.nan, 1.5, 1.0], [9.0, 0.0, -1.0]], dtype=np.float32)


def arrays(result: Any) -> dict[str, Any]:
    """Every output of a result read back with ``as_numpy`` (raw_output_contents)."""
    response = result.get_response()
    out = {}
    for output in response.outputs:
        array = result.as_numpy(output.name)
        out[output.name] = {
            "datatype": output.datatype,
            "shape": list(output.shape),
            "values": np.asarray(array, dtype=float).tolist(),
        }
    out["_model_version"] = response.model_version
    out["_id"] = response.id
    return out


def contents_arrays(result: Any) -> dict[str, Any]:
    """Every output read from ``contents`` (the server mirrors a contents request)."""
    response = result.get_response()
    out = {"_raw_count": len(response.raw_output_contents)}
    for output in response.outputs:
        field = {"FP32": "fp32_contents", "FP64": "fp64_contents", "BOOL": "bool_contents"}[output.datatype]
        values = np.asarray(getattr(output.contents, field), dtype=float)
        out[output.name] = {
            "datatype": output.datatype,
            "shape": list(output.shape),
            "values": values.reshape(list(output.shape)).tolist(),
        }
    return out


def error(call: Any) -> dict[str, str]:
    try:
        call()
    except InferenceServerException as err:
        return {"status": str(err.status()), "message": err.message()}
    return {"status": "OK", "message": ""}


def scenario_health(client: triton.InferenceServerClient) -> dict[str, Any]:
    metadata = client.get_model_metadata(MODEL)
    server = client.get_server_metadata()
    return {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(MODEL),
        "version_ready": client.is_model_ready(MODEL, "1"),
        "unknown_ready": client.is_model_ready("nope"),
        "server_name": server.name,
        "metadata": {
            "name": metadata.name,
            "versions": list(metadata.versions),
            "platform": metadata.platform,
            "inputs": [(i.name, i.datatype, list(i.shape)) for i in metadata.inputs],
            "outputs": [(o.name, o.datatype, list(o.shape)) for o in metadata.outputs],
        },
        "unknown_metadata": error(lambda: client.get_model_metadata("nope")),
    }


def scenario_raw(client: triton.InferenceServerClient) -> dict[str, Any]:
    x = triton.InferInput("x", list(ROWS.shape), "FP32")
    x.set_data_from_numpy(ROWS)
    result = client.infer(MODEL, [x], request_id="req-1")
    only = client.infer(
        MODEL,
        [x],
        outputs=[triton.InferRequestedOutput("p_value"), triton.InferRequestedOutput("kl")],
        parameters={"alpha": 0.5},
    )
    return {"all": arrays(result), "some": arrays(only)}


def scenario_contents(client: triton.InferenceServerClient) -> dict[str, Any]:
    x = triton.InferInput("x", list(ROWS.shape), "FP32")
    # No set_data_from_numpy: the values travel in contents.fp32_contents, not raw bytes.
    x._get_tensor().contents.fp32_contents.extend(ROWS.ravel().tolist())
    return contents_arrays(client.infer(MODEL, [x]))


def scenario_columns(client: triton.InferenceServerClient) -> dict[str, Any]:
    temperature = triton.InferInput("temperature", [4], "FP32")
    temperature.set_data_from_numpy(ROWS[:, 0])
    load = triton.InferInput("load", [4, 1], "FP64")
    load.set_data_from_numpy(ROWS[:, 1:2].astype(np.float64))
    site = triton.InferInput("site", [4], "BYTES")
    site.set_data_from_numpy(np.array([b"north", b"east", b"south", b"mars"], dtype=np.object_))
    result = client.infer(MODEL, [site, temperature, load])
    return arrays(result)


def main() -> None:
    target, scenario = sys.argv[1], sys.argv[2]
    if scenario == "descriptors":
        from tritonclient.grpc import service_pb2

        print(json.dumps(describe_messages(service_pb2.DESCRIPTOR)))
        return
    client = triton.InferenceServerClient(target)
    result = globals()[f"scenario_{scenario}"](client)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
