#!/usr/bin/env python3
"""Prints one compact table from Google Benchmark JSON files (.ci/run).

Usage: bench_table.py FILE.json [FILE.json ...]
Columns: benchmark, wall time per iteration, CPU time, iterations, and the
benchmark's own counters (rates and targets such as bytes_per_second).
"""
import json
import os
import sys


def fmt_time(value, unit):
    ns = value * {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[unit]
    for scale, name in ((1e9, "s"), (1e6, "ms"), (1e3, "us")):
        if ns >= scale:
            return f"{ns / scale:.3f} {name}"
    return f"{ns:.1f} ns"


def fmt_counter(value):
    if abs(value) >= 1e9:
        return f"{value / 1e9:.3g}G"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.3g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:.3g}k"
    return f"{value:.4g}"


SKIP = {"name", "run_name", "run_type", "repetitions", "repetition_index",
        "threads", "iterations", "real_time", "cpu_time", "time_unit",
        "family_index", "per_family_instance_index", "aggregate_name",
        "aggregate_unit", "label", "error_occurred", "error_message"}


def main(paths):
    rows = []
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        binary = os.path.basename(path)[:-len(".json")]
        for b in data.get("benchmarks", []):
            if b.get("error_occurred"):
                rows.append((binary, b["name"], "ERROR", "", "", b.get("error_message", "")))
                continue
            counters = "  ".join(f"{k}={fmt_counter(v)}" for k, v in b.items()
                                 if k not in SKIP and isinstance(v, (int, float)))
            rows.append((binary, b["name"], fmt_time(b["real_time"], b["time_unit"]),
                         fmt_time(b["cpu_time"], b["time_unit"]), str(b["iterations"]), counters))
    header = ("binary", "benchmark", "time", "cpu", "iters", "counters")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(5)]
    line = lambda r: "  ".join(r[i].ljust(widths[i]) if i < 2 else r[i].rjust(widths[i])
                               for i in range(5)) + "  " + r[5]
    print(line(header))
    print("-" * (sum(widths) + 12))
    for r in rows:
        print(line(r))
    print(f"# {len(rows)} benchmarks from {len(paths)} binaries (smoke mode: figures are indicative)")


if __name__ == "__main__":
    main(sys.argv[1:])
