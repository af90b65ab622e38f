#!/usr/bin/env bash
# RSS of chstreamd following its embedded simulator, with no subscriber
# (issue 9 item 1): samples VmRSS every STEP seconds for DURATION seconds.
#
#   bazel build -c opt //server:chstreamd && cp bazel-bin/server/chstreamd /tmp/
#   bench/simulator_rss.sh /tmp/chstreamd 2000 600 10 > rss.tsv
#
# Arguments: binary, simulator rate (companies events/s), duration (s), step
# (s), metrics port (default 19464). Prints "seconds<TAB>VmRSS kB<TAB>VmHWM
# kB<TAB>events stored" lines; the database is private to the run.
set -euo pipefail
bin="$1"
rate="${2:-2000}"
duration="${3:-600}"
step="${4:-10}"
metrics_port="${5:-19464}"
dir="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
"$bin" --simulate --simulator_rate="$rate" --db_path="$dir/chstream.db" \
  --grpc_address=127.0.0.1:0 --metrics_address=127.0.0.1:"$metrics_port" \
  --log_level=warning 2>"$dir/log" &
pid=$!
for ((t = 0; t <= duration; t += step)); do
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
  stored=$( (curl -s "http://127.0.0.1:$metrics_port/metrics" || true) |
    awk '/^chstream_store_events / {print $2}')
  printf '%d\t%s\t%s\t%s\n' "$t" "$rss" "$hwm" "${stored:-?}"
  sleep "$step"
done
