#!/bin/bash
# Checks deploy/: the Prometheus alert rules and scrape config with promtool
# (Debian package "prometheus"), the systemd units with systemd-analyze
# when it is available (with ExecStart pointed at an existing binary, since
# chstreamd is not installed where tests run), and that the env examples
# set only settings chstreamd has.
set -euo pipefail
dir="$(dirname "$0")"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
/usr/bin/promtool check rules "$dir/alert_rules.yml"
cp "$dir/prometheus.yml" "$dir/alert_rules.yml" "$tmp/"
/usr/bin/promtool check config "$tmp/prometheus.yml"
for metric in chstream_health_state chstream_health_issue \
    chstream_alert_webhook_failures_total chstream_ingest_stream_state \
    chstream_ingest_last_event_timestamp_seconds chstream_ingest_lag_seconds \
    chstream_ingest_reconnects_total chstream_replica_role \
    chstream_leader_takeovers_total; do
  grep -q "$metric" "$dir/alert_rules.yml" || { echo "missing $metric"; exit 1; }
done
# Every CHSTREAM_<NAME> in an env example is a chstreamd setting.
"$dir/../server/chstreamd" --help > "$tmp/chstreamd_help.txt"
for env in "$dir"/*.env.example; do
  for name in $(sed -n 's/^#* *CHSTREAM_\([A-Z0-9_]*\)=.*/\1/p' "$env"); do
    flag="--$(echo "$name" | tr 'A-Z' 'a-z')"
    grep -q -- "^  $flag " "$tmp/chstreamd_help.txt" ||
      { echo "$env: CHSTREAM_$name is not a chstreamd setting"; exit 1; }
  done
done
if command -v systemd-analyze >/dev/null; then
  for unit in chstream.service chstream-replica.service; do
    sed 's|/usr/local/bin/chstreamd|/bin/true|' "$dir/$unit" > "$tmp/$unit"
    out="$(systemd-analyze verify "$tmp/$unit" 2>&1 || true)"
    if [ -n "$out" ]; then echo "$out"; exit 1; fi
    echo "systemd-analyze verify $unit: OK"
  done
fi
echo PASS
