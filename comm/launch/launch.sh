#!/usr/bin/env bash
# Starts N local processes of a command, torchrun-style: each gets RANK,
# WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT, and
# TANDEM_JOB_TOKEN (random per launch unless set: the store refuses clients
# of other jobs; a guard against accidents, not encryption). Output
# lines are prefixed with "[rank K] ". When a rank exits non-zero, the others
# are killed at once and the launcher exits with that status; --timeout kills
# everything after S seconds (exit 124). --store_timeout S sets
# TANDEM_STORE_TIMEOUT: how long a rank waits without a word from the store
# host before it reports that host as stopped (default 30 s).
#
# Usage: launch -n N [--port P] [--timeout S] [--store_timeout S] -- COMMAND [ARGS...]
set -uo pipefail
n=1
port="${MASTER_PORT:-}"
timeout=0
while (($#)); do
  case "$1" in
    -n) n="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    --store_timeout) export TANDEM_STORE_TIMEOUT="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "launch: unknown option '$1' (usage: launch -n N [--port P] [--timeout S] [--store_timeout S] -- COMMAND)" >&2; exit 2 ;;
  esac
done
(($#)) || { echo "launch: no command (usage: launch -n N -- COMMAND)" >&2; exit 2; }
[[ "$n" =~ ^[0-9]+$ && "$n" -ge 1 ]] || { echo "launch: -n: expected a positive number, got '$n'" >&2; exit 2; }
# A port nobody answers on, unless one was given. Another process can still
# take it before rank 0 binds it; then (and only then) the launch is run
# again on another port, at most 3 times.
auto_port=0
[[ -z "$port" ]] && auto_port=1
pick_port() {
  for _ in $(seq 50); do
    port=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
  done
}

set -m  # each rank in its own process group, so a kill takes its pipeline
pids=()
kill_all() {
  # CONT too: a stopped rank (SIGSTOP) acts on TERM only once it runs.
  for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null; kill -CONT -- "-$p" 2>/dev/null; done
}
[[ -n "${TANDEM_JOB_TOKEN:-}" ]] || TANDEM_JOB_TOKEN="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
export TANDEM_JOB_TOKEN
if ((timeout > 0)); then
  (sleep "$timeout"; echo "launch: timeout after ${timeout}s; killing all ranks" >&2; kill -TERM $$) &
  watchdog=$!
fi
log="$(mktemp)"
trap 'kill_all; set +m; rm -f "$log"; exit 124' TERM

# Runs every rank once on $port; sets `status`.
launch_once() {
  declare -A rank_of
  pids=()
  : >"$log"
  for ((r = 0; r < n; r++)); do
    (
      export RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r LOCAL_WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 MASTER_PORT=$port
      "$@" 2>&1 | sed -u "s/^/[rank $r] /" | tee -a "$log"
    ) &
    pids+=($!)
    rank_of[$!]=$r
  done
  status=0
  for ((i = 0; i < n; i++)); do
    wait -n -p done_pid
    rc=$?
    if ((rc != 0)); then
      echo "launch: rank ${rank_of[$done_pid]} exited with status $rc; killing the other ranks" >&2
      kill_all
      status=$rc
      break
    fi
  done
  wait "${pids[@]}" 2>/dev/null
}

for attempt in 1 2 3; do
  ((auto_port)) && pick_port
  launch_once "$@"
  ((status != 0 && auto_port && attempt < 3)) && grep -q "Address already in use" "$log" || break
  echo "launch: port $port was taken before rank 0 bound it; launching again on another port" >&2
done
[[ -n "${watchdog:-}" ]] && kill -- "-$watchdog" 2>/dev/null
rm -f "$log"
exit $status
