#!/bin/bash
# Instructions per ingested event of chstreamd, independent of the machine's
# load: runs CHSTREAMD under callgrind following a full-speed ch_simulator
# (company profiles) twice, to N_SMALL and N_LARGE events, stopping it with
# SIGTERM when the head reaches N, and prints
# (Ir(N_LARGE) - Ir(N_SMALL)) / (N_LARGE - N_SMALL), so start-up cancels out.
#
#   bench/callgrind_ingest.sh path/to/chstreamd path/to/ch_simulator \
#       [N_SMALL=2000] [N_LARGE=10000] [chstreamd flags...]
set -euo pipefail
chstreamd=$1 sim=$2 small=${3:-2000} large=${4:-10000}
shift $(( $# < 4 ? $# : 4 ))
work=$(mktemp -d /tmp/chstream-callgrind-XXXXXX)
trap 'rm -rf "$work"' EXIT

run() {  # $1 = N; prints the Ir total
  local n=$1 d="$work/$1"
  shift
  mkdir -p "$d"
  "$sim" --port=0 --keys=bench-key --rate=0 --streams=companies \
    --profile_only --max_events="$n" --retention_events="$n" \
    --log_level=warning >"$d/sim.out" 2>&1 &
  local sim_pid=$!
  for _ in $(seq 150); do grep -q "listening on" "$d/sim.out" && break; sleep 0.2; done
  local url
  url=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$d/sim.out" | head -1)
  CH_STREAMING_API_KEY=bench-key valgrind --tool=callgrind \
    --callgrind-out-file="$d/cg.out" "$chstreamd" --db_path="$d/db" \
    --grpc_address=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
    --upstream_url="$url" --log_level=warning "$@" >"$d/chstreamd.log" 2>&1 &
  local pid=$! start=$SECONDS head=0
  # Polling the database is the benchmark's clock here, not a test wait.
  while [ "$head" != "$n" ] && [ $((SECONDS - start)) -lt 1800 ]; do
    sleep 1
    head=$(sqlite3 -readonly "$d/db" \
      "SELECT COALESCE(MAX(position), 0) FROM events" 2>/dev/null || echo 0)
  done
  kill -TERM "$pid"; wait "$pid" || true
  kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true
  [ "$head" = "$n" ] || { echo "head $head of $n after 1800 s" >&2; exit 1; }
  grep -m1 '^summary:' "$d/cg.out" | awk '{print $2}'
}

ir_small=$(run "$small" "$@")
ir_large=$(run "$large" "$@")
echo "Ir($small) $ir_small, Ir($large) $ir_large:" \
  "$(( (ir_large - ir_small) / (large - small) )) instructions per event"
