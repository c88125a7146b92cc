"""tandem's Python package from another Bazel workspace.

Rebalances the EPLB README's 2 layers x 12 experts onto 8 GPUs with the
reference's call, and writes a 1F1B schedule as PyTorch's pipelining CSV.
Exits 1 if a result is not what tandem promises.
"""
import sys

import numpy as np

from tandem import schedule
from tandem.eplb import metrics, rebalance_experts


def main():
    weight = np.array([[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                       [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]])
    phy2log, log2phy, logcnt = rebalance_experts(weight, 16, 4, 2, 8)
    # Every slot holds an expert; each expert's replica count matches its slots.
    counts = np.stack([np.bincount(row, minlength=12) for row in phy2log])
    balancedness = metrics(weight, phy2log, 8)["balancedness_aggregate"]
    print(f"EPLB: phy2log {phy2log.shape}, replicas per expert {logcnt.tolist()}, "
          f"balancedness {balancedness:.3f}")
    csv = schedule.generate("1f1b", 4, 8).to_torch_csv()
    rows = csv.splitlines()
    print(f"1F1B, 4 ranks x 8 micro-batches as PyTorch's CSV: {len(rows)} rows; rank 0 starts {rows[0][:24]}")
    ok = (phy2log.shape == (2, 16) and (counts == logcnt).all() and (log2phy.shape[:2] == (2, 12))
          and len(rows) == 4 and schedule.from_torch_csv(csv, "1f1b", 8).to_torch_csv() == csv)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
