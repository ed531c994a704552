"""Pair lw-vae records of a candidate cache with the branch's lw-vae records: ROC-AUC, AP, per-table moves."""

import collections
import json
import statistics as st
import sys
from pathlib import Path

cand_dir, base_dir = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "/work/next/benchmarks/.cache/detection"
prefix = sys.argv[3] if len(sys.argv) > 3 else "lw-vae__"


def load(d, pre):
    out = {}
    for f in sorted(Path("/").glob(str(f"{d}/{pre}*.json").lstrip("/"))):
        r = json.loads(f.read_text())
        out[(r["dataset"], r["seed"])] = r
    return out


c, b = load(cand_dir, prefix), load(base_dir, "lw-vae__")
keys = sorted(set(c) & set(b))
for kind in ("adbench", "mixed"):
    ks = [k for k in keys if b[k]["kind"] == kind]
    if not ks:
        continue
    tables = collections.defaultdict(list)
    for k in ks:
        tables[k[0]].append(k)

    def mean(m, src, tables=tables):
        return st.mean(st.mean(src[k][m] for k in t) for t in tables.values())

    moves = {t: st.mean(c[k]["roc_auc"] - b[k]["roc_auc"] for k in v) for t, v in tables.items()}
    better = sum(c[k]["roc_auc"] > b[k]["roc_auc"] for k in ks)
    worse = sum(c[k]["roc_auc"] < b[k]["roc_auc"] for k in ks)
    print(
        f"{kind}: {len(ks)} pairs, {len(tables)} tables; ROC-AUC {mean('roc_auc', c):.5f} vs {mean('roc_auc', b):.5f}; "
        f"AP {mean('ap', c):.4f} vs {mean('ap', b):.4f}; pairs better/worse {better}/{worse}"
    )
    print("  moved most:", ", ".join(f"{t} {v:+.4f}" for t, v in sorted(moves.items(), key=lambda x: -abs(x[1]))[:8]))
