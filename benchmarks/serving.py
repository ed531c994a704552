"""Serving benchmark (issue 3): ``latentwatch serve`` beside MLServer and in-process onnxruntime.

One run, one bundle: the project's default VAE (``training.pipeline.train_bundle`` with no
overrides) trained on 20,000 synthetic rows of 32 correlated numeric features (4 latent
factors plus noise) is put in a model repository, and on the same ``model.onnx`` three
servers run side by side on loopback:

- ``latentwatch serve`` with micro-batching on (the default) and, as a second process,
  with ``--no-batching``;
- MLServer (``../shared/peers/mlserver/serve.sh``: its best configuration on 2 cores,
  ``parallel_workers`` 0, batching off) in its own virtual environment;
- for reference, a ``grpc.aio`` v2 server that answers zeros and does nothing else
  (``--serve-floor``): what Python gRPC itself costs per request on this machine.

Every server gets the same onnxruntime thread count (``--threads``, default 1) and the
same Open Inference Protocol v2 load from the peers' generator ``../shared/peers/load.py``
(one client process per run, in a Python that has tritonclient but not mlserver): unary
requests of 1, 64 and 1024 rows from one caller and 64 concurrent single-row callers, with
the server process tree's CPU time; the generator also times in-process onnxruntime on the
same matrices with the same thread count (the limit) before and after each run. Each
server's run is repeated ``--repeats`` times, the servers in turns, and every figure is
the median over the repeats. latentwatch's own bidirectional ``StreamScore`` RPC is driven
from here (packed float32 tensors, 64 and 1024 rows per message, up to 8 messages in
flight). Every output of the graph is computed by both servers; the clients ask for the
three row scores (``recon_error``, ``neg_elbo``, ``kl``).

Then ``py-spy`` (when found, ``--py-spy``) samples the latentwatch server while this
script drives it with a lone 1-row caller, 64 concurrent 1-row callers and a 1024-row
caller; the samples are grouped by where they fall (onnxruntime, the micro-batcher, the
servicers, gRPC/asyncio machinery, ...). The rows per onnxruntime call under the 64
callers come from the server's own ``latentwatch_batch_rows`` histogram.

Bars (issue 3): at 1024-row requests >= 2x MLServer's rows/s; 64 concurrent single-row
callers >= 3x MLServer's rows/s with a lower p99; micro-batching on gives those callers
more throughput than off and costs a lone caller no more than its delay setting. The
report is printed and written between ``<!-- serving:start -->`` and
``<!-- serving:end -->`` in ``--results`` (the rest of the file is left alone)::

    ../shared/peers/mlserver/setup.sh          # once: MLServer's own venv
    pip install py-spy                         # optional, any venv; or --py-spy PATH
    python benchmarks/serving.py
    python benchmarks/serving.py --repeats 1 --no-write     # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from results_file import publish
from serving_bundle import MODEL, REPO, describe_bundle, synthetic_rows, train_default_bundle
from serving_figures import Figures
from serving_load import SIZES, STREAM_SIZES, STREAM_WINDOW, Load, pick_client_python, stream_phase
from serving_profile import Profiled, run_profiles
from serving_report import MARK_END, MARK_START, Context, peer_versions, render
from serving_servers import (
    CORES,
    FLOOR,
    LW_OFF,
    LW_ON,
    MLS,
    MLS_CORES,
    TAGS,
    Server,
    floor_server,
    latentwatch_server,
    mlserver_server,
    serve_floor,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_peers = Path(os.environ.get("LATENTWATCH_PEERS", REPO.parent / "shared" / "peers"))
    default_venv = Path(os.environ.get("VENV", Path.home() / ".cache" / "latentwatch-peers" / "mlserver"))
    add = parser.add_argument
    add("--peers", type=Path, default=default_peers, help="the peers folder (load.py, mlserver/)")
    add("--mlserver-venv", type=Path, default=default_venv, help="MLServer's venv (built by mlserver/setup.sh)")
    add("--client-python", help="Python that runs load.py (default: this one if it can, else MLServer's venv)")
    add("--threads", type=int, default=1, help="onnxruntime intra-op threads of every server and in-process")
    add("--repeats", type=int, default=3, help="runs per server, medians reported (default 3)")
    add("--duration", type=float, default=2.0, help="seconds per unary, in-process and stream case")
    add("--conc-duration", type=float, default=3.0, help="seconds of the concurrent callers case")
    add("--warmup", type=float, default=0.5, help="uncounted seconds before each case")
    add("--concurrency", type=int, default=64)
    add("--py-spy", default=shutil.which("py-spy"), help="py-spy executable for the profile (default: on PATH)")
    add("--profile-seconds", type=float, default=4.0)
    add("--workdir", type=Path, help="keep the bundle, logs, load.py JSON and profiles here")
    add("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    add("--no-write", action="store_true", help="print the report only")
    add("--serve-floor", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the floor server, in its own process
    return parser.parse_args(argv)


def measure(servers: dict[str, Server], load: Load, args: argparse.Namespace, workdir: Path) -> Figures:
    """Every server's load.py runs (in turns) and the streams, ``repeats`` times."""
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in servers}
    streams: list[dict[str, Any]] = []
    order = list(servers)
    for r in range(args.repeats):
        turn = order[r % len(order) :] + order[: r % len(order)]
        for label in turn:
            sizes = (1,) if label in (LW_OFF, FLOOR) else (1024,) if label == MLS_CORES else SIZES
            threads = args.threads * CORES if label == MLS_CORES else None
            out = workdir / f"load-{TAGS[label]}-{r}.json"
            print(f"[{r + 1}/{args.repeats}] load.py against {label} ...", flush=True)
            runs[label].append(load.run(servers[label], sizes, out, threads))
            summary = [p for p in runs[label][-1]["phases"] if p["phase"] in ("unary", "conc")]
            print("   " + "; ".join(f"{p['phase']} {p['rows_per_request']}: {p['rows_per_s']:,.0f}/s" for p in summary))
            if label == LW_ON:
                for n in STREAM_SIZES:
                    x = synthetic_rows(n, 100 + n).astype(np.float32)
                    streams.append(stream_phase(servers[LW_ON], x, args.duration, args.warmup, STREAM_WINDOW))
                    print(f"   stream {n}: {streams[-1]['rows_per_s']:,.0f}/s", flush=True)
    return Figures(runs, streams)


def stream_check(streams: list[dict[str, Any]], onnx: Path, threads: int) -> str:
    """Compare the streamed neg_elbo with in-process onnxruntime on the same rows."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
    worst = 0.0
    for s in streams:
        n = s["rows_per_request"]
        x = synthetic_rows(n, 100 + n).astype(np.float32)
        (ref,) = session.run(["neg_elbo"], {"x": x})
        got = np.asarray(s["neg_elbo"], dtype=np.float32)
        worst = max(worst, float(np.max(np.abs(got - ref) / (1 + np.abs(ref)))))
    return f"{'ok' if worst <= 1e-4 else 'MISMATCH'} (neg_elbo max relative diff {worst:.1e})"


def gpu_note() -> str:
    if Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia").exists():
        return "a GPU is present, but this benchmark measures the CPU provider only (`--device cpu`)"
    return "none on this machine: the CUDA provider's throughput and its CPU agreement are not measured here"


def missing_peers(args: argparse.Namespace) -> str | None:
    """Why MLServer or the load generator cannot run from ``--peers`` / ``--mlserver-venv`` (None if they can)."""
    if not (args.mlserver_venv / "bin" / "mlserver").exists():
        return f"no MLServer in {args.mlserver_venv}: run {args.peers / 'mlserver' / 'setup.sh'} first"
    if not (args.peers / "mlserver" / "serve.sh").exists() or not (args.peers / "load.py").exists():
        return f"{args.peers} lacks load.py or mlserver/serve.sh (--peers)"
    return None


def trained_bundle(workdir: Path) -> tuple[Path, str]:
    """The default bundle, trained afresh as version 1 of the model repository ``workdir/models``, and its line."""
    bundle = workdir / "models" / MODEL / "1"
    if bundle.exists():
        shutil.rmtree(bundle)
    print("training the default bundle ...", flush=True)
    seconds = train_default_bundle(bundle)
    return bundle, describe_bundle(bundle) + f"; {seconds:.0f} s to train"


def make_servers(args: argparse.Namespace, repo: Path, onnx: Path, workdir: Path) -> dict[str, Server]:
    """Every server of the comparison, not started yet; their order is the order of the turns."""
    return {
        MLS: mlserver_server(args.peers, onnx, args.threads, workdir),
        MLS_CORES: mlserver_server(args.peers, onnx, args.threads * CORES, workdir, MLS_CORES),
        LW_ON: latentwatch_server(LW_ON, repo, args.threads, True, workdir),
        LW_OFF: latentwatch_server(LW_OFF, repo, args.threads, False, workdir),
        FLOOR: floor_server(workdir),
    }


def run_servers(
    servers: dict[str, Server], load: Load, args: argparse.Namespace, workdir: Path
) -> tuple[Figures, list[Profiled]]:
    """Start every server, wait until each is ready, measure them and profile latentwatch; then stop them all."""
    os.environ["VENV"] = str(args.mlserver_venv)  # serve.sh reads it
    try:
        for server in servers.values():
            server.start()
        for server in servers.values():
            load.wait_ready(server, 180)
        print("servers ready: " + ", ".join(f"{s.label} on {s.target}" for s in servers.values()), flush=True)
        figures = measure(servers, load, args, workdir)
        profiles = run_profiles(args.py_spy, servers[LW_ON], args.profile_seconds, args.concurrency, workdir)
    finally:
        for server in servers.values():
            server.stop()
    return figures, profiles


def make_context(
    args: argparse.Namespace, command: str, load_start: tuple[float, float, float], bundle_info: str, load: Load,
    figures: Figures,
) -> Context:  # fmt: skip
    """What the report says about the run besides the figures (the service's batching settings among them)."""
    from service.config import ServiceConfig

    return Context(
        command=command,
        bundle_info=bundle_info,
        load_start=load_start,
        load_end=os.getloadavg(),
        threads=args.threads,
        delay_ms=1e3 * ServiceConfig().max_batch_delay_s,
        batch_rows=ServiceConfig().max_batch_rows,
        inference_threads=ServiceConfig().inference_threads,
        repeats=args.repeats,
        load=load,
        peer=peer_versions(args.mlserver_venv / "bin" / "python"),
        client_python=Path(load.python).parent.parent.name + "/bin/python",
        stream_check=stream_check(figures.streams, load.onnx, args.threads),
        gpu_note=gpu_note(),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and write its section of ``--results``; 2 when the peers are missing."""
    args = parse_args(argv)
    if args.serve_floor:
        serve_floor(args.serve_floor)
        return 0
    command = shlex.join(["python", "benchmarks/serving.py", *(argv if argv is not None else sys.argv[1:])])
    load_start = os.getloadavg()
    missing = missing_peers(args)
    if missing:
        print(missing, file=sys.stderr)
        return 2
    client_python = pick_client_python(args.client_python, args.mlserver_venv)

    with tempfile.TemporaryDirectory(prefix="lw-serving-bench-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        bundle, bundle_info = trained_bundle(workdir)
        onnx = bundle / "model.onnx"
        load = Load(client_python, args.peers / "load.py", onnx, args.threads, args.duration,
                    args.conc_duration, args.warmup, args.concurrency)  # fmt: skip
        figures, profiles = run_servers(make_servers(args, workdir / "models", onnx, workdir), load, args, workdir)
        ctx = make_context(args, command, load_start, bundle_info, load, figures)
        (workdir / "streams.json").write_text(json.dumps(figures.streams, indent=1))
        section = render(figures, ctx, profiles)
    publish(section, args.results, MARK_START, MARK_END, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
