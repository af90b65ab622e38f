#!/usr/bin/env bash
# ReplayEvents from a time: the first stored event published at or after TIME
# (RFC 3339; default: 10 minutes ago), and the next ones, at most LIMIT
# (0 = up to the head as of the call).
#
#   ./replay_from_time.sh
#   ./replay_from_time.sh 2024-03-01T09:30:00Z 100
#   ./replay_from_time.sh 2024-03-01T09:30:00+01:00
set -euo pipefail
ADDR="${ADDR:-127.0.0.1:50051}"

if [[ $# -gt 2 ]]; then
  echo "usage: $0 [RFC3339_TIME [LIMIT]]" >&2
  exit 2
fi
if [[ $# -ge 1 ]]; then
  since="$1"
else
  # GNU date, then BSD/macOS date.
  since="$(date -u -d '10 minutes ago' +%Y-%m-%dT%H:%M:%SZ 2>/dev/null ||
           date -u -v-10M +%Y-%m-%dT%H:%M:%SZ)"
fi
limit="${2:-10}"
rfc3339='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$'
if [[ ! "$since" =~ $rfc3339 ]]; then
  echo "$0: '$since' is not an RFC 3339 time such as 2024-03-01T09:30:00Z" >&2
  exit 2
fi
if [[ ! "$limit" =~ ^[0-9]+$ ]]; then
  echo "$0: '$limit' is not a non-negative integer" >&2
  exit 2
fi
body="{\"start\":{\"publishedSince\":\"$since\"},\"limit\":\"$limit\"}"
exec grpcurl -plaintext -d "$body" "$ADDR" chstream.v1.CompanyStream/ReplayEvents
