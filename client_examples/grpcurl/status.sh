#!/usr/bin/env bash
# GetStatus: per upstream stream state and counters, the store (head and
# oldest position, sizes), the connected subscribers.
#
# -emit-defaults prints zero counters and empty fields too, so that every
# field is visible.
#
#   ./status.sh
#   ./status.sh | jq -r '.store.headPosition'   # uint64 prints as a string
set -euo pipefail
ADDR="${ADDR:-127.0.0.1:50051}"

if [[ $# -ne 0 ]]; then
  echo "usage: $0" >&2
  exit 2
fi
exec grpcurl -plaintext -emit-defaults "$ADDR" chstream.v1.CompanyStream/GetStatus
