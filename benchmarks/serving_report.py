"""The serving benchmark's section of RESULTS.md: the setup, the figures, the bars, the profile.

Every figure is a median over the repeats (``serving_figures``). The bars (issue 3): at
1024-row requests >= 2x MLServer's rows/s; 64 concurrent single-row callers >= 3x MLServer's
rows/s with a lower p99; micro-batching on gives those callers more than off and costs a lone
caller no more than its delay setting.
"""

from __future__ import annotations

import collections
import datetime as dt
import subprocess
from dataclasses import dataclass
from pathlib import Path

from results_file import machine, versions
from serving_bundle import OUTPUTS
from serving_figures import Cell, Figures, median, select
from serving_load import SIZES, STREAM_SIZES, STREAM_WINDOW, Load
from serving_profile import THREAD_CORE, THREAD_LOOP, THREAD_PYTHON, WAITING, Profiled
from serving_servers import CORES, FLOOR, LW_OFF, LW_ON, MLS, MLS_CORES

MARK_START = "<!-- serving:start -->"
MARK_END = "<!-- serving:end -->"


def fmt_rate(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def fmt_ms(cell: Cell) -> str:
    if cell.p50_ms is None:
        return "-"
    return f"{cell.p50_ms:.2f} / {cell.p99_ms:.2f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def cpu_pair(a: Cell, b: Cell | None) -> str:
    def one(c: Cell | None) -> str:
        return "-" if c is None or c.cpu_ms_per_request is None else f"{c.cpu_ms_per_request:.2f}"

    return f"{one(a)} / {one(b)}"


def figures_table(f: Figures, lw_batch_rows: float | None, threads: int) -> list[str]:
    lines = [
        f"| case | latentwatch rows/s | latentwatch p50 / p99 ms | MLServer rows/s | MLServer p50 / p99 ms "
        f"| latentwatch / MLServer | in-process onnxruntime rows/s ({threads} thread) | latentwatch / in-process "
        "| MLServer / in-process | server CPU ms per request, latentwatch / MLServer |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def row(case: str, lw: Cell, mls: Cell | None, inproc_rows: int) -> None:
        limit = f.inproc(inproc_rows)
        m_rate = mls.rows_per_s if mls else None
        lines.append(
            f"| {case} | {fmt_rate(lw.rows_per_s)} | {fmt_ms(lw)} | {fmt_rate(m_rate)} | "
            f"{fmt_ms(mls) if mls else '-'} | {ratio(lw.rows_per_s, m_rate)} | {fmt_rate(limit)} "
            f"({inproc_rows} row{'s' if inproc_rows > 1 else ''}) | {ratio(lw.rows_per_s, limit)} | "
            f"{ratio(m_rate, limit)} | {cpu_pair(lw, mls)} |"
        )

    for n in SIZES:
        row(f"unary, 1 caller, {n} row{'s' if n > 1 else ''}", f.unary(LW_ON, n), f.unary(MLS, n), n)
    batch = f", {lw_batch_rows:.1f} rows per onnxruntime call" if lw_batch_rows else ""
    callers = f.concurrency()
    row(f"{callers} callers x 1 row, micro-batching on{batch}", f.conc(LW_ON), f.conc(MLS), 1)
    row(f"{callers} callers x 1 row, micro-batching off", f.conc(LW_OFF), f.conc(MLS), 1)
    row("unary, 1 caller, 1 row, micro-batching off", f.unary(LW_OFF, 1), f.unary(MLS, 1), 1)
    for n in STREAM_SIZES:
        row(f"latentwatch StreamScore, {n} rows/message, {STREAM_WINDOW} in flight", f.stream(n), None, n)
    return lines


def floor_table(f: Figures) -> list[str]:
    """The same load against a grpc.aio v2 server that does no work (fixed zeros, no checks)."""
    if not f.runs.get(FLOOR):
        return []
    lines = [
        "Reference, same load, same time: a `grpc.aio` v2 server in the same Python that answers zeros and does "
        "nothing else (no model, no checks, no interceptor; `serving.py --serve-floor`), the floor under any "
        "Python gRPC server here:",
        "",
        "| case | rows/s | p50 / p99 ms | server CPU ms per request | latentwatch / floor | MLServer / floor |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case, floor, lw, mls in (
        ("unary, 1 caller, 1 row", f.unary(FLOOR, 1), f.unary(LW_ON, 1), f.unary(MLS, 1)),
        (f"{f.concurrency()} callers x 1 row", f.conc(FLOOR), f.conc(LW_ON), f.conc(MLS)),
    ):
        cpu = "-" if floor.cpu_ms_per_request is None else f"{floor.cpu_ms_per_request:.2f}"
        lines.append(
            f"| {case} | {fmt_rate(floor.rows_per_s)} | {fmt_ms(floor)} | {cpu} | "
            f"{ratio(lw.rows_per_s, floor.rows_per_s)} | {ratio(mls.rows_per_s, floor.rows_per_s)} |"
        )
    return lines


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def bar_large_requests(f: Figures) -> str:
    """1024-row requests >= 2x MLServer's rows/s (its better configuration), beside in-process onnxruntime."""
    lw1024, m1024 = f.unary(LW_ON, 1024), f.unary(MLS, 1024)
    limit = f.inproc(1024)
    cores = f.unary(MLS_CORES, 1024) if f.runs.get(MLS_CORES) else None
    best = max([m1024] + ([cores] if cores else []), key=lambda c: c.rows_per_s)
    r1024 = lw1024.rows_per_s / best.rows_per_s
    ceiling = limit / m1024.rows_per_s if limit else float("nan")
    cores_note = ""
    if cores:
        cores_note = (
            f" MLServer with {CORES} intra-op threads (every core, as latentwatch uses for a lone large request "
            f"shared out over its inference threads) does {fmt_rate(cores.rows_per_s)} rows/s, "
            f"p50 {cores.p50_ms:.2f} ms, "
            f"with {fmt_rate(f.inproc_all_cores(1024))} rows/s in-process at {CORES} threads; the ratio is against "
            "MLServer's better configuration."
        )
    return (
        f"- 1024-row requests >= 2x MLServer's rows/s: {r1024:.2f}x ({fmt_rate(lw1024.rows_per_s)} vs "
        f"{fmt_rate(best.rows_per_s)}), {verdict(r1024 >= 2)}. In-process onnxruntime on the same matrix in one "
        f"call with one thread does {fmt_rate(limit)} rows/s, {ceiling:.2f}x MLServer with one thread.{cores_note}"
    )


def bar_concurrent_callers(f: Figures) -> str:
    """64 concurrent single-row callers >= 3x MLServer's rows/s with a lower p99; CPU per request of each side."""
    on, mls = f.conc(LW_ON), f.conc(MLS)
    rconc = on.rows_per_s / mls.rows_per_s
    conc_ok = rconc >= 3 and on.p99_ms < mls.p99_ms
    client = median([1e3 * p["client_cpu_s"] / p["requests"] for p in select(f.runs[LW_ON] + f.runs[MLS], "conc")])
    floor_note = ""
    if f.runs.get(FLOOR):
        floor = f.conc(FLOOR)
        floor_note = (
            f" The grpc.aio server that does no work reached {fmt_rate(floor.rows_per_s)} rows/s under the same "
            f"load ({floor.rows_per_s / mls.rows_per_s:.2f}x MLServer) at {floor.cpu_ms_per_request:.2f} ms of CPU "
            "per request."
        )
    return (
        f"- 64 concurrent single-row callers >= 3x MLServer's rows/s with a lower p99: {rconc:.2f}x "
        f"({fmt_rate(on.rows_per_s)} vs {fmt_rate(mls.rows_per_s)} rows/s), p99 {on.p99_ms:.1f} vs "
        f"{mls.p99_ms:.1f} ms, {verdict(conc_ok)}. Per request the latentwatch server spent "
        f"{on.cpu_ms_per_request:.2f} ms of CPU, MLServer {mls.cpu_ms_per_request:.2f} ms "
        f"({mls.cpu_ms_per_request / on.cpu_ms_per_request:.1f}x more), and the load generator, on the same 2 "
        f"cores, {client:.2f} ms.{floor_note}"
    )


def bar_micro_batching(f: Figures, delay_ms: float) -> str:
    """Micro-batching on beats off under the callers, and costs a lone caller's p50 at most its delay."""
    on, off = f.conc(LW_ON), f.conc(LW_OFF)
    lone_on, lone_off = f.unary(LW_ON, 1), f.unary(LW_OFF, 1)
    batch_gain = on.rows_per_s / off.rows_per_s
    extra_p50 = lone_on.p50_ms - lone_off.p50_ms
    extra_p99 = lone_on.p99_ms - lone_off.p99_ms
    lone_ok = batch_gain > 1 and extra_p50 <= delay_ms
    return (
        f"- micro-batching on gives those callers more than off and costs a lone caller no more than its delay "
        f"({delay_ms:g} ms): {batch_gain:.2f}x the rows/s of off ({fmt_rate(on.rows_per_s)} vs "
        f"{fmt_rate(off.rows_per_s)}; p99 {on.p99_ms:.1f} vs {off.p99_ms:.1f} ms); lone 1-row caller p50 "
        f"{lone_on.p50_ms:.3f} ms on vs {lone_off.p50_ms:.3f} ms off ({extra_p50:+.3f} ms; p99 {extra_p99:+.3f} ms), "
        f"{verdict(lone_ok)}."
    )


def bars(f: Figures, delay_ms: float) -> list[str]:
    """The three bars of issue 3, each with its figures and whether this run meets it."""
    return [bar_large_requests(f), bar_concurrent_callers(f), bar_micro_batching(f, delay_ms)]


def profile_lines(profiles: list[Profiled]) -> list[str]:
    if not profiles:
        return ["- not profiled (py-spy not found: `pip install py-spy` in any venv, then `--py-spy PATH`)"]
    names = [g for g, _ in sum((p.groups for p in profiles), collections.Counter()).most_common() if g not in WAITING]
    lines = [
        "| | " + " | ".join(p.case for p in profiles) + " |",
        "| --- |" + " ---: |" * len(profiles),
        "| server CPU per request (process time / requests) | "
        + " | ".join(f"{1e3 * p.server_cpu_s / max(p.requests, 1):.3f} ms" for p in profiles)
        + " |",
        "| requests/s while sampled | " + " | ".join(f"{p.requests / p.seconds:,.0f}" for p in profiles) + " |",
    ]
    for kind in (THREAD_LOOP, THREAD_PYTHON, THREAD_CORE):
        cells = " | ".join(f"{p.threads.get(kind, 0.0) / p.window_s:.2f}" for p in profiles)
        lines.append(f"| cores busy: {kind} | {cells} |")
    for name in names:
        cells = " | ".join(f"{100 * p.groups[name] / max(p.working, 1):.0f}%" for p in profiles)
        lines.append(f"| samples: {name} | {cells} |")
    for name in WAITING:
        cells = " | ".join(f"{100 * p.groups[name] / max(p.samples, 1):.0f}%" for p in profiles)
        lines.append(f"| not in the shares above, share of all samples: {name} | {cells} |")
    return lines


def top_own(profiles: list[Profiled], k: int = 6) -> list[str]:
    lines = []
    for p in profiles:
        top = ", ".join(f"{frame} {100 * n / max(p.working, 1):.1f}%" for frame, n in p.own.most_common(k))
        lines.append(f"  - {p.case}: {top}")
    return lines


def peer_versions(python: Path) -> str:
    code = "import mlserver, onnxruntime, grpc; print(mlserver.__version__, onnxruntime.__version__, grpc.__version__)"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    if result.returncode:
        return "?"
    mls, ort, grpc = result.stdout.split()
    return f"mlserver {mls}, onnxruntime {ort}, grpcio {grpc}"


@dataclass
class Context:
    command: str
    bundle_info: str
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float]
    threads: int
    delay_ms: float
    batch_rows: int
    inference_threads: int
    repeats: int
    load: Load
    peer: str
    client_python: str
    stream_check: str
    gpu_note: str


STREAM_NOTE = (
    "StreamScore keeps up to 8 messages in flight, so the server runs two onnxruntime calls at once "
    "(`--inference-threads`, default 2, each call with the 1 intra-op thread): at 1024 rows per message it can pass "
    "the single-call in-process figure. So can a lone unary 1024-row request: it finds both inference threads "
    "idle and is shared out over them."
)


def run_lines(f: Figures, ctx: Context) -> list[str]:
    """The run's description: command, date and machine load, bundle, servers, load, score checks, GPU."""
    checks = f.checks()
    loads = f.loads()
    other = f.other_cores()
    return [
        f"- command: `{ctx.command}`",
        f"- date: {dt.date.today().isoformat()}; machine: {machine()}, shared with other jobs; load average (1, 5, "
        f"15 min) {', '.join(f'{v:.2f}' for v in ctx.load_start)} at the start, "
        f"{', '.join(f'{v:.2f}' for v in ctx.load_end)} at the end (1-min range over the runs "
        f"{min(loads):.2f}-{max(loads):.2f}); cores busy with other processes during the gRPC phases "
        f"{min(other):.2f}-{max(other):.2f}",
        f"- bundle: {ctx.bundle_info}",
        f"- servers, all on loopback at once, {ctx.threads} onnxruntime intra-op thread each: `latentwatch serve` "
        f"(micro-batching on: at most {ctx.batch_rows} rows per onnxruntime call, a lone large request shared out "
        f"over its {ctx.inference_threads} inference threads; delay {ctx.delay_ms:g} ms) and "
        "`latentwatch serve --no-batching` "
        f"({versions(('grpcio', 'protobuf', 'onnxruntime-gpu', 'onnxruntime', 'numpy'))}); MLServer via "
        f"`../shared/peers/mlserver/serve.sh` (parallel_workers 0, batching off; {ctx.peer}), and for the 1024-row "
        f"case also with {CORES} intra-op threads",
        f"- load: `../shared/peers/load.py` (v2 gRPC, raw_input_contents, outputs {', '.join(OUTPUTS)}) run by "
        f"`{ctx.client_python}`, {ctx.load.duration:g} s per unary case, {ctx.load.conc_duration:g} s for the "
        f"{ctx.load.concurrency} callers, {ctx.load.warmup:g} s warm-up each; {ctx.repeats} repeats per server, "
        "the servers in turns; every figure is the median over the repeats; the in-process figures are the median "
        "of every in-process measurement load.py made (before and after each run). Server CPU is the server "
        "process tree's user+system time over the phase. The client shares the 2 cores with the server.",
        f"- scores: load.py's check (64 rows, tritonclient) against in-process onnxruntime: latentwatch "
        f"{checks.get(LW_ON, '-')}, MLServer {checks.get(MLS, '-')}; StreamScore {ctx.stream_check}",
        f"- GPU: {ctx.gpu_note}",
    ]


def render(f: Figures, ctx: Context, profiles: list[Profiled]) -> str:
    """The markdown section for RESULTS.md (markers included)."""
    conc = next((p for p in profiles if "callers" in p.case), None)
    batch_rows = conc.batch_rows if conc else None
    lines = [
        MARK_START,
        "## Serving (issue 3)",
        "",
        *run_lines(f, ctx),
        "",
        *figures_table(f, batch_rows, ctx.threads),
        "",
        STREAM_NOTE,
        "",
        *floor_table(f),
        "",
        "Bars (issue 3):",
        "",
        *bars(f, ctx.delay_ms),
        "",
        "Where the latentwatch server's time goes: CPU of its threads from /proc, and py-spy sampling it (every "
        "thread, 200 Hz, non-blocking) while this script drove it over v2 with latentwatch's own stubs; the "
        "shares are of the samples py-spy saw as active, less two kinds of waiting it counts as active (last rows):",
        "",
        *profile_lines(profiles),
        "",
    ]
    if profiles:
        lines += ["- innermost latentwatch frame, share of the same samples:", *top_own(profiles)]
    lines.append(MARK_END)
    return "\n".join(lines) + "\n"
