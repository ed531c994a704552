"""Check the new default's lw-vae records against session 24's variant records (same arithmetic)."""

import json
from pathlib import Path

new = "/work/next/benchmarks/.cache/detection"
old = "/work/next/benchmarks/.cache/detection-session24-bounded-decoder-and-clipping"
variant = {}
for f in sorted(Path("/").glob(str(old + "/*/lw-vae~bounded-decoder-clip-long-patience__*.json").lstrip("/"))):
    r = json.loads(f.read_text())
    variant[(r["dataset"], r["seed"])] = r
same = differ = 0
ratios = []
for f in sorted(Path("/").glob(str(new + "/lw-vae__*.json").lstrip("/"))):
    r = json.loads(f.read_text())
    v = variant.get((r["dataset"], r["seed"]))
    if v is None:
        print("no variant record", r["dataset"], r["seed"])
        continue
    if r["roc_auc"] == v["roc_auc"] and r["ap"] == v["ap"]:
        same += 1
    else:
        differ += 1
        print("DIFFER", r["dataset"], r["seed"], r["roc_auc"], v["roc_auc"])
    ratios.append(r["fit_seconds"] / v["fit_seconds"])
ratios.sort()
print(
    f"same {same}, differ {differ}; fit seconds vs session 24's machine: median {ratios[len(ratios) // 2]:.2f}"
    if ratios
    else "none"
)
