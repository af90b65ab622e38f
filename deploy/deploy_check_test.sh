#!/bin/bash
# Checks deploy/: the Prometheus alert rules and scrape config with promtool
# (Debian package "prometheus"), and the systemd unit with systemd-analyze
# when it is available (with ExecStart pointed at an existing binary, since
# chstreamd is not installed where tests run).
set -euo pipefail
dir="$(dirname "$0")"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
/usr/bin/promtool check rules "$dir/alert_rules.yml"
cp "$dir/prometheus.yml" "$dir/alert_rules.yml" "$tmp/"
/usr/bin/promtool check config "$tmp/prometheus.yml"
for metric in chstream_health_state chstream_health_issue \
    chstream_alert_webhook_failures_total chstream_ingest_stream_state \
    chstream_ingest_last_event_timestamp_seconds chstream_ingest_lag_seconds \
    chstream_ingest_reconnects_total; do
  grep -q "$metric" "$dir/alert_rules.yml" || { echo "missing $metric"; exit 1; }
done
if command -v systemd-analyze >/dev/null; then
  sed 's|/usr/local/bin/chstreamd|/bin/true|' "$dir/chstream.service" \
    > "$tmp/chstream.service"
  out="$(systemd-analyze verify "$tmp/chstream.service" 2>&1 || true)"
  if [ -n "$out" ]; then echo "$out"; exit 1; fi
  echo "systemd-analyze verify: OK"
fi
echo PASS
