"""Container health check: exit 0 when latentwatch's gRPC health service answers SERVING.

    python healthcheck.py [HOST:PORT] [--service NAME] [--timeout SECONDS]

The target defaults to ``127.0.0.1:$LATENTWATCH_PORT`` (50051). The service name ``""``
(the default) is the whole server: SERVING once a model is loaded, NOT_SERVING while
draining on SIGTERM. A model's name asks about that model. Prints one line and exits 1
when the answer is anything but SERVING or no answer comes within the timeout.

Plaintext only, like the Kubernetes gRPC probe: with TLS on, probe a plaintext port or
drop the health check.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(target: str, service: str = "", timeout_s: float = 3.0) -> tuple[bool, str]:
    """Ask ``target``'s health service about ``service``; return (serving, what was seen)."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as err:
            return False, f"{err.code().name}: {err.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_target = f"127.0.0.1:{os.environ.get('LATENTWATCH_PORT', '50051')}"
    parser.add_argument("target", nargs="?", default=default_target, help=f"HOST:PORT (default {default_target})")
    parser.add_argument("--service", default="", help="health service name: '' (the server) or a model's name")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer (default 3)")
    args = parser.parse_args(argv)
    serving, seen = check(args.target, args.service, args.timeout)
    what = f"service {args.service!r}" if args.service else "server"
    print(f"{args.target} {what}: {seen}", file=sys.stdout if serving else sys.stderr)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
