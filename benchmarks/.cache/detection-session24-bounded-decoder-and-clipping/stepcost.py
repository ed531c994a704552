"""Per-step cost of the clipper and of the bounded decoder, interleaved, one thread."""

import statistics
import sys
import time

sys.path.insert(0, "/work/main")
import torch

torch.set_num_threads(1)
from training.loop import GradientClipper  # noqa: E402
from training.models import VAE, Architecture  # noqa: E402
from training.models.base import Batch  # noqa: E402


def make(n, bounded):
    torch.manual_seed(0)
    arch = Architecture(
        n_inputs=n,
        n_numeric=n,
        group_sizes=(),
        feature_order=tuple(range(n)),
        hidden=min(256, 2 * n) if n > 16 else 32,
        depth=2,
        latent_dim=max(2, min(32, n // 2)),
        min_scale=0.01,
        bounded_decoder=bounded,
    )
    return VAE(arch)


def timed(n, rows, bounded, clip, steps=400):
    model = make(n, bounded)
    opt = model.configure_optimizers(1e-3, 1e-4)
    if clip:
        GradientClipper(opt[0], 3.0)
    x = torch.randn(rows, n)
    b = Batch(x, x, torch.ones_like(x), torch.zeros(rows, 0, dtype=torch.long))
    for _ in range(20):
        model.train_step(b, opt, 1.0)
    t = time.perf_counter()
    for _ in range(steps):
        model.train_step(b, opt, 1.0)
    return (time.perf_counter() - t) / steps * 1e6


for n, rows in [(5, 91), (21, 32), (100, 256)]:
    res = {k: [] for k in ["mlp", "mlp+clip", "bounded", "bounded+clip"]}
    for _ in range(5):
        for k in res:
            res[k].append(timed(n, rows, "bounded" in k, "clip" in k))
    base = statistics.median(res["mlp"])
    print(
        n,
        rows,
        {k: f"{statistics.median(v):.0f}us x{statistics.median(v) / base:.2f}" for k, v in res.items()},
        flush=True,
    )
