#!/usr/bin/env bash
# The schedule CLI against the parity data: `generate --format=trace` equals
# every case of dualpipe_traces.txt byte for byte (compute-only and with comm
# batches); rejected cases exit 2 with nothing on stdout and one stderr line.
# Then validate/simulate/render/convert/compare on generated files.
set -euo pipefail
bin="$1"
traces="$2"
json_check="$3"
check() { python3 "$json_check" "$@"; }
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
"$bin" simulate "$tmp/dp.json" --cost=F=1,B=2,I=1,W=1,FB=3 --format=json | check - 'd["bubble"] == 6' \
  'len(d["per_rank"]) == 8' '"critical_path" not in d'
"$bin" simulate "$tmp/dp.json" --format=json --critical_path | check - 'len(d["critical_path"]) > 0'
# The default is a short summary for people: makespan, bubble, a row per rank.
"$bin" simulate "$tmp/dp.json" >"$tmp/summary"
grep -q "^makespan .*, bubble 6 " "$tmp/summary"
[[ $(grep -cE '^[0-9]+ ' "$tmp/summary") -eq 8 ]] || { echo "FAIL: summary rows"; cat "$tmp/summary"; exit 1; }
# A binary schedule is read as binary whatever its name (it used to be read
# as trace text under an unknown extension).
"$bin" generate --kind=dualpipe --ranks=4 --microbatches=8 --format=binary --out="$tmp/x.binary"
"$bin" validate "$tmp/x.binary" | grep -q "valid dualpipe schedule, 4 ranks"
cp "$tmp/x.binary" "$tmp/x.txt"
"$bin" simulate "$tmp/x.txt" --format=json | check - 'd["kind"] == "dualpipe"'
"$bin" render "$tmp/dp.json" --format=svg --out="$tmp/dp.svg"
grep -q "<svg" "$tmp/dp.svg"
"$bin" render "$tmp/dp.json" --format=chrome | check - 'len([e for e in d["traceEvents"] if e["ph"] == "X"]) > 0'
"$bin" generate --kind=zbv --ranks=4 --microbatches=8 --format=torch_csv --out="$tmp/zbv.csv"
"$bin" simulate "$tmp/zbv.csv" --kind=zbv --format=json | check - 'd["kind"] == "zbv"'
"$bin" convert "$tmp/dp.pb" --format=torch_csv 2>"$tmp/err" && { echo "FAIL: dualpipe CSV export"; exit 1; }
grep -q "PyTorch's CSV cannot express" "$tmp/err"
printf '0F0,0B0\n1F0,1Q0\n' >"$tmp/bad.csv"
"$bin" validate "$tmp/bad.csv" 2>"$tmp/err" && { echo "FAIL: bad CSV accepted"; exit 1; }
grep -q "line 2 column 5" "$tmp/err"
"$bin" compare --ranks=8 --microbatches=20 --format=json >"$tmp/cmp.json"
check "$tmp/cmp.json" 'd["ranks"] == 8' \
  '{k["kind"]: (k["stages"], k["chunks"], k["bubble"]) for k in d["kinds"]}["dualpipe"] == (8, 2, 6)' \
  '{k["kind"]: (k["stages"], k["chunks"], k["bubble"]) for k in d["kinds"]}["1f1b"] == (8, 1, 21)' \
  '{k["kind"]: (k["stages"], k["chunks"], k["bubble"]) for k in d["kinds"]}["zb1p"] == (8, 1, 7)'
"$bin" compare --ranks=3 --microbatches=5 --format=json | \
  check - '[k for k in d["kinds"] if k["kind"] == "dualpipe"][0]["error"].startswith("ranks: expected an even number")'
# Bad invocations and inputs exit 2 naming what was wrong (regressions: a
# 1e308 cost printed inf and -nan and exited 0; compare --ranks=0 exited 0
# with every row an error; --cost=F=1,F=2 was accepted; generate with
# 100000 x 100000 aborted on allocation); a failure while running exits 1.
bad() {  # bad PATTERN ARGS...: exit 2, one line naming PATTERN, nothing on stdout
  local pattern="$1" rc=0
  shift
  (ulimit -v 4194304; timeout 60 "$bin" "$@") >"$tmp/out" 2>"$tmp/err" || rc=$?
  [[ $rc -eq 2 && ! -s "$tmp/out" ]] || { echo "FAIL: $*: rc=$rc"; cat "$tmp/err"; exit 1; }
  grep -q -- "$pattern" "$tmp/err" || { echo "FAIL: $*: $(cat "$tmp/err")"; exit 1; }
}
bad "cost F: expected a finite number in \[0, 1e+12\]" simulate "$tmp/dp.json" --cost=F=1e308,B=1e308
bad "cost F: given twice" simulate "$tmp/dp.json" --cost=F=1,F=2
bad "ranks: expected" compare --ranks=0 --microbatches=4
bad "microbatches: expected" compare --ranks=4 --microbatches=-1
bad "ranks x stages per rank x microbatches: expected at most" generate --kind=1f1b --ranks=100000 --microbatches=100000
bad "flag 'ranks'" generate --kind=1f1b --ranks=abc
rc=0
"$bin" generate --kind=1f1b --ranks=2 --microbatches=2 --out=/nonexistent/dir/x 2>"$tmp/err" || rc=$?
[[ $rc -eq 1 ]] || { echo "FAIL: unwritable --out: rc=$rc"; exit 1; }
"$bin" --help 2>&1 | grep -q "Exit status: 0 done, 2 bad invocation or input, 1 a failure while running"
# Must-fail twin of the strict parse: NaN and repeated keys are refused.
echo '{"a": NaN}' | check - && { echo "FAIL: NaN accepted"; exit 1; }
echo '{"a": 1, "a": 2}' | check - && { echo "FAIL: repeated key accepted"; exit 1; }
echo "schedule_cli_test: $cases parity cases byte for byte; CLI checks passed"
