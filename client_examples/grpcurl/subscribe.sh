#!/usr/bin/env bash
# Subscribe: stored events from a start point, then live ones, with
# caught_up / fell_behind / heartbeat messages in between. Ends after
# MAX_TIME seconds (grpcurl -max-time): a subscription never ends on its own.
#
#   ./subscribe.sh                          # all streams, from now, 30 s
#   ./subscribe.sh companies filings        # only these streams
#   COMPANY=SC571653 ./subscribe.sh         # only this company
#   AFTER_POSITION=1200 ./subscribe.sh      # resume after position 1200
#   AFTER_POSITION=1200 STORE_ID=0123...cdef ./subscribe.sh  # ... if the
#                                           # store is still the same one
#   MAX_TIME=300 HEARTBEAT_SECONDS=10 ./subscribe.sh companies
#
# The deadline ending the call is the normal end here: grpcurl reports it as
# DeadlineExceeded (exit code 68), which this script turns into exit 0.
set -euo pipefail
ADDR="${ADDR:-127.0.0.1:50051}"
max_time="${MAX_TIME:-30}"
heartbeat="${HEARTBEAT_SECONDS:-5}"
after="${AFTER_POSITION:-}"
company="${COMPANY:-}"
store_id="${STORE_ID:-}"

fail() {
  echo "$0: $*" >&2
  exit 2
}
[[ "$max_time" =~ ^[0-9]+(\.[0-9]+)?$ ]] || fail "MAX_TIME '$max_time' is not a number of seconds"
[[ "$heartbeat" =~ ^[0-9]+$ ]] || fail "HEARTBEAT_SECONDS '$heartbeat' is not an integer"
[[ -z "$after" || "$after" =~ ^[0-9]+$ ]] || fail "AFTER_POSITION '$after' is not an integer"
[[ -z "$company" || "$company" =~ ^[A-Za-z0-9]{1,10}$ ]] || fail "COMPANY '$company' is not a company number"
[[ -z "$store_id" || "$store_id" =~ ^[0-9a-f]{32}$ ]] || fail "STORE_ID '$store_id' is not a store_id (32 hex digits)"

streams=""
for s in "$@"; do
  [[ "$s" =~ ^[a-z-]+$ ]] || fail "'$s' is not a stream name (e.g. companies, filings)"
  streams="${streams:+$streams,}\"$s\""
done

if [[ -n "$after" ]]; then
  start="{\"afterPosition\":\"$after\"}"
else
  start='{"now":true}'
fi
filter="{\"streams\":[$streams]"
if [[ -n "$company" ]]; then
  filter="$filter,\"companyNumbers\":[\"$company\"]"
fi
filter="$filter}"
body="{\"start\":$start,\"filter\":$filter,\"heartbeatSeconds\":$heartbeat"
if [[ -n "$store_id" ]]; then
  # FailedPrecondition if the server's store was replaced since the position
  # was saved (positions may have been reassigned): resume from a time.
  body="$body,\"expectedStoreId\":\"$store_id\""
fi
body="$body}"

rc=0
grpcurl -plaintext -max-time "$max_time" -d "$body" "$ADDR" \
  chstream.v1.CompanyStream/Subscribe || rc=$?
if [[ $rc -eq 68 ]]; then
  echo "(subscription ended by -max-time ${max_time}s)" >&2
  exit 0
fi
exit "$rc"
