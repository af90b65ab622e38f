#!/usr/bin/env bash
# ReplayEvents from a position: the stored events after AFTER_POSITION
# (exclusive, like every resume cursor in chstream.v1), at most LIMIT of them
# (0 = up to the head as of the call).
#
#   ./replay_from_position.sh            # the first 10 stored events
#   ./replay_from_position.sh 1200 50    # positions 1201..1250
#   ./replay_from_position.sh 1200 50 | jq -r '.position'
#   STORE_ID=0123...cdef ./replay_from_position.sh 1200 50
#
# A position means something only under its store's identity (GetStatus
# store.storeId; the first event's storeId; the chstream-store-id response
# header, shown by grpcurl -v). Keep it beside the position and pass it as
# STORE_ID: if the server's store was replaced since (positions may have been
# reassigned), the call fails with FailedPrecondition instead of returning
# other events; then resume from a time (replay_from_time.sh).
set -euo pipefail
ADDR="${ADDR:-127.0.0.1:50051}"
store_id="${STORE_ID:-}"

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
if [[ -n "$store_id" && ! "$store_id" =~ ^[0-9a-f]{32}$ ]]; then
  echo "$0: STORE_ID '$store_id' is not a store_id (32 hex digits)" >&2
  exit 2
fi
# uint64 fields are JSON strings in proto3 JSON (numbers are accepted too).
body="{\"start\":{\"afterPosition\":\"$after\"},\"limit\":\"$limit\""
if [[ -n "$store_id" ]]; then
  body="$body,\"expectedStoreId\":\"$store_id\""
fi
body="$body}"
exec grpcurl -plaintext -d "$body" "$ADDR" chstream.v1.CompanyStream/ReplayEvents
