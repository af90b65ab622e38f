#!/usr/bin/env bash
# grpc.health.v1.Health/Check: SERVING or NOT_SERVING (NOT_SERVING while the
# server shuts down). SERVICE is "" (the whole server, the default) or
# "chstream.v1.CompanyStream".
#
#   ./health_check.sh
#   ./health_check.sh chstream.v1.CompanyStream
set -euo pipefail
ADDR="${ADDR:-127.0.0.1:50051}"

if [[ $# -gt 1 ]]; then
  echo "usage: $0 [SERVICE]" >&2
  exit 2
fi
service="${1:-}"
if [[ ! "$service" =~ ^[A-Za-z0-9._]*$ ]]; then
  echo "$0: '$service' is not a service name" >&2
  exit 2
fi
exec grpcurl -plaintext -d "{\"service\":\"$service\"}" "$ADDR" \
  grpc.health.v1.Health/Check
