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
# --elastic: the launcher serves the store itself (comm/store:store_server,
# TANDEM_STORE_HOST=launcher), so it outlives any rank. When a rank fails,
# the others are not killed: they fail on their own deadlines, and the
# launcher waits --grace S (default 60) for them. Ranks that were killed by
# a signal, or still run after the grace (stopped, or on a lost host), are
# lost and left alone; the others are the survivors, and the launcher starts
# the command again on them (RANK 0..M-1, WORLD_SIZE=M) with the next
# TANDEM_GENERATION, at most --max_restarts times (default 3). A command
# that re-forms from a checkpoint (tools/demo) continues the job there.
#
# Usage: launch -n N [--port P] [--timeout S] [--store_timeout S] [--elastic [--grace S] [--max_restarts K]]
#        -- COMMAND [ARGS...]
set -uo pipefail
n=1
port="${MASTER_PORT:-}"
timeout=0
elastic=0
grace=60
max_restarts=3
while (($#)); do
  case "$1" in
    -n) n="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    --store_timeout) export TANDEM_STORE_TIMEOUT="$2"; shift 2 ;;
    --elastic) elastic=1; shift ;;
    --grace) grace="$2"; shift 2 ;;
    --max_restarts) max_restarts="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "launch: unknown option '$1' (usage: launch -n N [--port P] [--timeout S] [--store_timeout S] [--elastic [--grace S] [--max_restarts K]] -- COMMAND)" >&2; exit 2 ;;
  esac
done
(($#)) || { echo "launch: no command (usage: launch -n N -- COMMAND)" >&2; exit 2; }
[[ "$n" =~ ^[0-9]+$ && "$n" -ge 1 ]] || { echo "launch: -n: expected a positive number, got '$n'" >&2; exit 2; }
[[ "$grace" =~ ^[0-9]+$ ]] || { echo "launch: --grace: expected seconds >= 0, got '$grace'" >&2; exit 2; }
[[ "$max_restarts" =~ ^[0-9]+$ ]] || { echo "launch: --max_restarts: expected a count >= 0, got '$max_restarts'" >&2; exit 2; }
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

# The torchrun-style environment of rank $1 of $2 on $port.
rank_env() {
  export RANK=$1 WORLD_SIZE=$2 LOCAL_RANK=$1 LOCAL_WORLD_SIZE=$2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port
}

# Runs every rank once on $port; sets `status`.
launch_once() {
  declare -A rank_of
  pids=()
  : >"$log"
  for ((r = 0; r < n; r++)); do
    (
      rank_env "$r" "$n"
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

# The store server next to this script (runfiles, or bazel-bin's layout).
store_server() {
  local here="${BASH_SOURCE[0]}" c
  for c in "${TANDEM_STORE_SERVER:-}" "$here.runfiles/tandem/comm/store/store_server" \
    "${RUNFILES_DIR:-/nonexistent}/tandem/comm/store/store_server" "$(dirname "$here")/../store/store_server"; do
    [[ -n "$c" && -x "$c" ]] && { echo "$c"; return; }
  done
  echo "launch: --elastic: comm/store:store_server not found next to $here (set TANDEM_STORE_SERVER)" >&2
  exit 2
}

# Elastic: one membership after another on the launcher's store.
launch_elastic() {
  local server out gen=0 live=$n
  server="$(store_server)" || exit 2
  out="$(mktemp)"
  "$server" --port="${port:-0}" >"$out" 2>&1 &
  local server_pid=$!
  for _ in $(seq 100); do grep -q "port" "$out" && break; sleep 0.1; done
  port="$(grep -oE 'port [0-9]+' "$out" | grep -oE '[0-9]+')"
  [[ -n "$port" ]] || { echo "launch: store server did not start: $(cat "$out")" >&2; exit 1; }
  export TANDEM_STORE_HOST=launcher
  status=1
  while :; do
    export TANDEM_GENERATION=$gen
    local -A rank_of=() rc_of=()
    pids=()
    local failed_at=0
    for ((r = 0; r < live; r++)); do
      (
        rank_env "$r" "$live"
        exec "$@" > >(sed -u "s/^/[rank $r] /") 2>&1
      ) &
      pids+=($!)
      rank_of[$!]=$r
    done
    local left=$live
    while ((left > 0)); do
      if ((failed_at > 0)); then
        # After a failure: collect the ranks that end within the grace.
        ((SECONDS - failed_at < grace)) || break
        sleep 0.2
        local p
        for p in "${pids[@]}"; do
          if [[ -z "${rc_of[$p]:-}" ]] && ! kill -0 "$p" 2>/dev/null; then
            wait "$p"
            rc_of[$p]=$?
            left=$((left - 1))
          fi
        done
        continue
      fi
      local waiting=() p
      for p in "${pids[@]}"; do [[ -z "${rc_of[$p]:-}" ]] && waiting+=("$p"); done
      wait -n -p done_pid "${waiting[@]}"
      local rc=$?
      rc_of[$done_pid]=$rc
      left=$((left - 1))
      if ((rc != 0)); then
        echo "launch: generation $gen: rank ${rank_of[$done_pid]} exited with status $rc; waiting up to ${grace}s for the others" >&2
        failed_at=$SECONDS
        failed_ns=$(date +%s%N)
      fi
    done
    if ((failed_at == 0)); then status=0; break; fi
    # Survivors: ranks that ended by themselves (not killed by a signal).
    local survivors=0 lost=""
    for p in "${pids[@]}"; do
      local rc="${rc_of[$p]:-running}"
      if [[ "$rc" == running ]] || ((rc > 128)); then lost+=" ${rank_of[$p]}"; else survivors=$((survivors + 1)); fi
    done
    echo "launch: generation $gen ended: ranks lost:${lost:- none}; $survivors survive" >&2
    gen=$((gen + 1))
    if ((survivors == 0 || gen > max_restarts)); then status=1; break; fi
    echo "launch: generation $gen: restarting on $survivors ranks, $(( ($(date +%s%N) - failed_ns) / 1000000 )) ms after the failure was seen" >&2
    live=$survivors
  done
  kill "$server_pid" 2>/dev/null
  rm -f "$out"
}

if ((elastic)); then
  launch_elastic "$@"
  [[ -n "${watchdog:-}" ]] && kill -- "-$watchdog" 2>/dev/null
  rm -f "$log"
  exit $status
fi

for attempt in 1 2 3; do
  ((auto_port)) && pick_port
  launch_once "$@"
  ((status != 0 && auto_port && attempt < 3)) && grep -q "Address already in use" "$log" || break
  echo "launch: port $port was taken before rank 0 bound it; launching again on another port" >&2
done
[[ -n "${watchdog:-}" ]] && kill -- "-$watchdog" 2>/dev/null
rm -f "$log"
exit $status
