#!/usr/bin/env bash
# GetResource: the current state of one resource of any stream, by its
# resource_uri exactly as in the events (kind, company number, data, deleted,
# last timepoint and position). NOT_FOUND (grpcurl exit code 69) if no stored
# event had that URI.
#
#   ./resource.sh /company/07217743/appointments/lZX48JQSZFCbhsdpDhYLSoG6Dbc
#   ./resource.sh company/04567890/exemptions    # no leading slash, as upstream
#   ./resource.sh /company/SC571653 | jq '.data.company_name'
set -euo pipefail
ADDR="${ADDR:-127.0.0.1:50051}"

if [[ $# -ne 1 ]]; then
  echo "usage: $0 RESOURCE_URI" >&2
  exit 2
fi
uri="$1"
# Upstream URIs are paths of letters, digits, '/', '-', '_' and '.'; checked
# here only so that the value cannot break the JSON below.
if [[ ! "$uri" =~ ^[A-Za-z0-9/_.-]{1,2048}$ ]]; then
  echo "$0: '$uri' is not a resource URI such as /company/SC571653/charges/ID" >&2
  exit 2
fi
exec grpcurl -plaintext -d "{\"resourceUri\":\"$uri\"}" "$ADDR" \
  chstream.v1.CompanyStream/GetResource
