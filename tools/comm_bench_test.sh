#!/usr/bin/env bash
# comm_bench prints one JSON record per size: each is parsed strictly and has
# the nccl-tests fields, for every operation on the local and store backends.
set -euo pipefail
bench="$1"
json_check="$2"
for backend in local store; do
  for op in allreduce allgather reducescatter alltoall sendrecv dispatch combine; do
    line="$("$bench" --backend=$backend --ranks=2 --op=$op --bytes=65536 --iters=2 --warmup=1 \
      --tokens=64 --hidden=128 --experts=8)"
    python3 "$json_check" - "d['backend'] == '$backend' and d['op'] == '$op' and d['ranks'] == 2" \
      'd["time_us"]["p50"] > 0 and d["algbw_GBps"] > 0 and d["memcpy_GBps"] > 0' <<<"$line" ||
      { echo "FAIL: $backend $op: $line"; exit 1; }
  done
done
echo "comm_bench_test: 14 records parsed"
