"""The committed service/_proto matches what scripts/gen_protos.sh generates from protos/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_generated_code_is_up_to_date() -> None:
    run = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen_protos.sh"), "--check"],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "up to date" in run.stdout


def test_generated_modules_import_as_a_package() -> None:
    from service._proto.inference import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
    from service._proto.latentwatch.v1 import scoring_pb2, scoring_pb2_grpc

    assert scoring_pb2.DESCRIPTOR.package == "latentwatch.v1"
    assert grpc_predict_v2_pb2.DESCRIPTOR.package == "inference"
    assert hasattr(scoring_pb2_grpc, "ScoringServiceStub")
    assert hasattr(grpc_predict_v2_pb2_grpc, "GRPCInferenceServiceStub")
