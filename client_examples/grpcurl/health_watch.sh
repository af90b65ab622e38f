#!/usr/bin/env bash
# grpc.health.v1.Health/Watch: prints the serving status now and again each
# time it changes, until MAX_TIME seconds (default 60) have passed.
#
#   ./health_watch.sh
#   MAX_TIME=600 ./health_watch.sh chstream.v1.CompanyStream
#
# The deadline is the normal end: grpcurl's DeadlineExceeded (exit code 68)
# becomes exit 0.
set -euo pipefail
ADDR="${ADDR:-127.0.0.1:50051}"
max_time="${MAX_TIME:-60}"

if [[ $# -gt 1 ]]; then
  echo "usage: $0 [SERVICE]" >&2
  exit 2
fi
service="${1:-}"
if [[ ! "$service" =~ ^[A-Za-z0-9._]*$ ]]; then
  echo "$0: '$service' is not a service name" >&2
  exit 2
fi
if [[ ! "$max_time" =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
  echo "$0: MAX_TIME '$max_time' is not a number of seconds" >&2
  exit 2
fi

rc=0
grpcurl -plaintext -max-time "$max_time" -d "{\"service\":\"$service\"}" \
  "$ADDR" grpc.health.v1.Health/Watch || rc=$?
if [[ $rc -eq 68 ]]; then
  echo "(watch ended by -max-time ${max_time}s)" >&2
  exit 0
fi
exit "$rc"
