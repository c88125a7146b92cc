"""Python overhead of tandem's package over its C++ calls, in one process.

  bazel run //python:benchmark [-- --calls=100 --out=FILE.json]

1. rebalance_experts at the DeepSeek-V3 shape (58 layers x 256 experts of
   balance/testdata/dsv3_58_layers.csv, 288 slots, 8 groups, 4 nodes, 32 GPUs,
   reference mode), called from Python with a NumPy array, a torch tensor and
   nested lists (argument conversion and the returned arrays included), against
   the same solve timed inside C++ (_tandem.time_rebalance).
2. A 1F1B schedule of 64 ranks x 1024 micro-batches generated and written as
   PyTorch's CSV, from Python and inside C++.
Calls alternate in blocks so drift hits both sides; the figures are medians.
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

from tandem import _tandem, schedule
from tandem.eplb import rebalance_experts

SHAPE = (288, 8, 4, 32)


def _loads():
    root = os.environ.get("RUNFILES_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    for base in (os.path.join(root, "tandem"), root):
        path = os.path.join(base, "balance/testdata/dsv3_58_layers.csv")
        if os.path.exists(path):
            return np.loadtxt(path, delimiter=",", comments="#", dtype=np.int64)
    raise FileNotFoundError("balance/testdata/dsv3_58_layers.csv")


def _timed(call, calls):
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def _compare(py_call, cpp_times, calls, block=10):
    py, cpp = [], []
    py_call()  # warm up
    cpp_times(2)
    for done in range(0, calls, block):
        n = min(block, calls - done)
        py += _timed(py_call, n)
        cpp += cpp_times(n)
    return statistics.median(py), statistics.median(cpp)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100, help="calls per figure (median)")
    parser.add_argument("--out", default="", help="also write the figures as JSON here")
    args = parser.parse_args()
    if args.calls < 1:
        parser.error(f"--calls: expected >= 1, got {args.calls}")
    import torch

    w = _loads()
    assert w.shape == (58, 256), w.shape
    inputs = {"numpy int64": w, "torch int64": torch.from_numpy(w.copy()), "nested lists": w.tolist()}
    rows = []
    for name, x in inputs.items():
        py, cpp = _compare(lambda: rebalance_experts(x, *SHAPE),
                           lambda n: _tandem.time_rebalance(w, *SHAPE, "reference", n), args.calls)
        rows.append({"call": f"rebalance_experts, DeepSeek-V3 shape, {name}", "python_ms": py * 1e3,
                     "cpp_ms": cpp * 1e3, "overhead": py / cpp - 1})
    py, cpp = _compare(lambda: schedule.generate("1f1b", 64, 1024).to_torch_csv(),
                       lambda n: _tandem.time_generate_csv("1f1b", 64, 1024, n), args.calls)
    rows.append({"call": "generate 1f1b 64 ranks x 1024 micro-batches + PyTorch CSV", "python_ms": py * 1e3,
                 "cpp_ms": cpp * 1e3, "overhead": py / cpp - 1})
    print(f"{'call':64} {'Python ms':>10} {'C++ ms':>10} {'overhead':>9}   (median of {args.calls})")
    for r in rows:
        print(f"{r['call']:64} {r['python_ms']:10.3f} {r['cpp_ms']:10.3f} {100 * r['overhead']:8.1f}%")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"calls": args.calls, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
