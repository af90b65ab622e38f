#!/usr/bin/env bash
# Describes a service, method or message through server reflection (no .proto
# files needed).
#
#   ./describe.sh                               # chstream.v1.CompanyStream
#   ./describe.sh chstream.v1.SubscribeRequest  # a message
#   ./describe.sh chstream.v1.StartPoint
#   ./describe.sh grpc.health.v1.Health
set -euo pipefail
ADDR="${ADDR:-127.0.0.1:50051}"

if [[ $# -gt 1 ]]; then
  echo "usage: $0 [SYMBOL]" >&2
  exit 2
fi
symbol="${1:-chstream.v1.CompanyStream}"
exec grpcurl -plaintext "$ADDR" describe "$symbol"
