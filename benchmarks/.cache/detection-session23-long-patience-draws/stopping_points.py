"""Where the default's patience would have stopped each member of a long-patience run.

Reads the histories written by ``histories.patch`` (LW_HIST=FILE; one JSON line per member:
its table, fit rows, warm-up, patience and every (step, validation loss) it evaluated). A run
with patience max(1,000 steps, 15 epochs) passes through every step the default's run takes,
with the same weights (training is seeded), so replaying the default's rule, max(300 steps,
15 epochs), on its history gives the default's stopping point and best validation loss.

    python stopping_points.py histories-other-seed.jsonl   # gunzip the .gz first
"""

import collections
import json
import math
import sys
from pathlib import Path

import numpy as np


def default_stop(member: dict) -> tuple[int, float]:
    """(best step, best validation loss) the default's patience would have ended with."""
    n = member["n_train"]
    steps_per_epoch = math.ceil(n / min(256, max(32, n // 20)))
    patience, since, best, best_step = max(300, 15 * steps_per_epoch), 0, math.inf, None
    for step, val in member["history"]:
        if step < member["warmup"]:
            continue
        if val < best:
            best, best_step, since = val, step, 0
        else:
            since += member["eval_every"]
            if since >= patience:
                return best_step, best
    return member["best_step"], member["best_val"]


def main(path: str) -> None:
    per_table = collections.defaultdict(list)
    for line in Path(path).read_text().splitlines():
        member = json.loads(line)
        step, val = default_stop(member)
        moved = member["best_step"] > step
        per_table[member["task"].split(":")[0]].append((moved, val - member["best_val"], member["best_step"] - step))
    every = [m for members in per_table.values() for m in members]
    moved = np.array([m[0] for m in every])
    gain = np.array([m[1] for m in every])
    later = np.array([m[2] for m in every])
    print(
        f"members {len(every)}, best step moved {moved.sum()} ({moved.mean():.0%}); "
        f"validation gain median {np.median(gain[moved]):.3f} nats/row; "
        f"later by a median {np.median(later[moved]):.0f} steps, more than 1,000 for {(later[moved] > 1000).sum()}"
    )
    for table, members in sorted(per_table.items()):
        n_moved = sum(m[0] for m in members)
        print(f"{table:17s} moved {n_moved}/{len(members)}, mean gain {np.mean([m[1] for m in members]):.3f} nats/row")


if __name__ == "__main__":
    main(sys.argv[1])
