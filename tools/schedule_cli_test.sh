#!/usr/bin/env bash
# The schedule CLI against the parity data: `generate --format=trace` equals
# every case of dualpipe_traces.txt byte for byte (compute-only and with comm
# batches); rejected cases exit 2 with nothing on stdout and one stderr line.
# Then validate/simulate/render/convert/compare on generated files.
set -euo pipefail
bin="$1"
traces="$2"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
cases=0
while IFS= read -r header; do
  read -r kind ranks n _ form <<<"$(sed -E 's/^== ([a-z]+) ranks=([0-9]+) N=([0-9]+) : (.*)$/\1 \2 \3 x \4/' <<<"$header")"
  expected="$tmp/expected"
  awk -v h="$header" '$0 == h {on = 1; next} /^==/ {on = 0} on && /^r[0-9]+:/' "$traces" >"$expected"
  args=(generate --kind="$kind" --ranks="$ranks" --microbatches="$n" --format=trace)
  case "$form" in
    REJECTED*)
      if "$bin" "${args[@]}" >"$tmp/out" 2>"$tmp/err"; then echo "FAIL: $header accepted"; exit 1; fi
      rc=0; "$bin" "${args[@]}" >/dev/null 2>&1 || rc=$?
      [[ $rc -eq 2 && ! -s "$tmp/out" && $(wc -l <"$tmp/err") -eq 1 ]] || { echo "FAIL: $header: rc=$rc"; cat "$tmp/err"; exit 1; }
      grep -q "microbatches: expected an even number" "$tmp/err" || { echo "FAIL: $header: $(cat "$tmp/err")"; exit 1; }
      ;;
    "with comm batches") "$bin" "${args[@]}" --with_comm >"$tmp/out"; cmp "$tmp/out" "$expected" || { echo "FAIL: $header"; diff "$tmp/out" "$expected" | head; exit 1; } ;;
    *) "$bin" "${args[@]}" >"$tmp/out"; cmp "$tmp/out" "$expected" || { echo "FAIL: $header"; exit 1; } ;;
  esac
  cases=$((cases + 1))
done < <(grep '^== ' "$traces")
[[ $cases -eq 33 ]] || { echo "FAIL: expected 33 cases, got $cases"; exit 1; }

# Must-fail twin: a different micro-batch count does not reproduce a case.
"$bin" generate --kind=dualpipe --ranks=4 --microbatches=10 --format=trace >"$tmp/out"
awk '$0 == "== dualpipe ranks=4 N=8 : compute-only" {on = 1; next} /^==/ {on = 0} on' "$traces" >"$tmp/expected"
if cmp -s "$tmp/out" "$tmp/expected"; then echo "FAIL: twin matched"; exit 1; fi

# Every format converts and validates; simulate reports the README bubble.
"$bin" generate --kind=dualpipe --ranks=8 --microbatches=20 --format=binary --out="$tmp/dp.pb"
"$bin" validate "$tmp/dp.pb" | grep -q "valid dualpipe schedule, 8 ranks"
for f in trace textproto json; do
  "$bin" convert "$tmp/dp.pb" --format=$f --with_comm --out="$tmp/dp.$f"
done
mv "$tmp/dp.trace" "$tmp/dp.txt"
"$bin" validate "$tmp/dp.textproto" | grep -q "lowered, deadlock-free"
"$bin" validate --kind=dualpipe --ranks=8 --microbatches=20 "$tmp/dp.txt" | grep -q "lowered, deadlock-free"
"$bin" simulate "$tmp/dp.json" --cost=F=1,B=2,I=1,W=1,FB=3 | grep -q '"bubble":6,'
"$bin" render "$tmp/dp.json" --format=svg --out="$tmp/dp.svg"
grep -q "<svg" "$tmp/dp.svg"
"$bin" generate --kind=zbv --ranks=4 --microbatches=8 --format=torch_csv --out="$tmp/zbv.csv"
"$bin" simulate "$tmp/zbv.csv" --kind=zbv | grep -q '"kind":"zbv"'
"$bin" convert "$tmp/dp.pb" --format=torch_csv 2>"$tmp/err" && { echo "FAIL: dualpipe CSV export"; exit 1; }
grep -q "PyTorch's CSV cannot express" "$tmp/err"
printf '0F0,0B0\n1F0,1Q0\n' >"$tmp/bad.csv"
"$bin" validate "$tmp/bad.csv" 2>"$tmp/err" && { echo "FAIL: bad CSV accepted"; exit 1; }
grep -q "line 2 column 5" "$tmp/err"
"$bin" compare --ranks=8 --microbatches=20 --format=json >"$tmp/cmp.json"
grep -q '{"kind":"dualpipe","stages":8,"chunks":2,"bubble":6,' "$tmp/cmp.json"
grep -q '{"kind":"1f1b","stages":8,"chunks":1,"bubble":21,' "$tmp/cmp.json"
grep -q '{"kind":"zb1p","stages":8,"chunks":1,"bubble":7,' "$tmp/cmp.json"
"$bin" compare --ranks=3 --microbatches=5 --format=json | grep -q '{"kind":"dualpipe","error":"ranks: expected an even number'
echo "schedule_cli_test: $cases parity cases byte for byte; CLI checks passed"
