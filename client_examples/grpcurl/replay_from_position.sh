#!/usr/bin/env bash
# ReplayEvents from a position: the stored events after AFTER_POSITION
# (exclusive, like every resume cursor in chstream.v1), at most LIMIT of them
# (0 = up to the head as of the call).
#
#   ./replay_from_position.sh            # the first 10 stored events
#   ./replay_from_position.sh 1200 50    # positions 1201..1250
#   ./replay_from_position.sh 1200 50 | jq -r '.position'
set -euo pipefail
ADDR="${ADDR:-127.0.0.1:50051}"

if [[ $# -gt 2 ]]; then
  echo "usage: $0 [AFTER_POSITION [LIMIT]]" >&2
  exit 2
fi
after="${1:-0}"
limit="${2:-10}"
for n in "$after" "$limit"; do
  if [[ ! "$n" =~ ^[0-9]+$ ]]; then
    echo "$0: '$n' is not a non-negative integer" >&2
    exit 2
  fi
done
# uint64 fields are JSON strings in proto3 JSON (numbers are accepted too).
body="{\"start\":{\"afterPosition\":\"$after\"},\"limit\":\"$limit\"}"
exec grpcurl -plaintext -d "$body" "$ADDR" chstream.v1.CompanyStream/ReplayEvents
