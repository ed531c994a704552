"""gRPC transport: the latentwatch.v1 and Open Inference Protocol v2 servicers, health,
reflection, the interceptor and the server. Generated stubs live in ``service._proto``."""
