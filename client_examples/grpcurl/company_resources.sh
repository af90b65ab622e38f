#!/usr/bin/env bash
# ListCompanyResources: a company's current resources (officers' appointments,
# PSCs, charges, filings, ...), optionally only some resource kinds, one page
# (ordered by kind, then URI). Deleted ones only with INCLUDE_DELETED=1.
# NOT_FOUND (exit code 69) if chstream has seen nothing about the company.
#
#   ./company_resources.sh 07217743                      # every kind, first 100
#   ./company_resources.sh 07217743 company-officers     # its officers
#   ./company_resources.sh 07217743 company-psc-individual company-psc-corporate \
#       company-psc-legal company-psc-supersecure       # its PSCs
#   PAGE_SIZE=1000 ./company_resources.sh 07217743 | jq -r '.resources[].resourceUri'
#   PAGE_TOKEN=<nextPageToken of the previous page> ./company_resources.sh 07217743
set -euo pipefail
ADDR="${ADDR:-127.0.0.1:50051}"
page_size="${PAGE_SIZE:-0}"      # 0 = the server's default, 100; at most 1000
page_token="${PAGE_TOKEN:-}"
include_deleted="${INCLUDE_DELETED:-0}"

if [[ $# -lt 1 ]]; then
  echo "usage: $0 COMPANY_NUMBER [RESOURCE_KIND...]" >&2
  exit 2
fi
number="$1"
shift
if [[ ! "$number" =~ ^[A-Za-z0-9\ ]{1,12}$ ]]; then
  echo "$0: '$number' is not a company number such as SC571653" >&2
  exit 2
fi
kinds=""
for kind in "$@"; do
  if [[ ! "$kind" =~ ^[a-z-]{1,64}$ ]]; then
    echo "$0: '$kind' is not a resource kind such as company-officers" >&2
    exit 2
  fi
  kinds="${kinds:+$kinds,}\"$kind\""
done
if [[ ! "$page_size" =~ ^[0-9]{1,9}$ ]]; then
  echo "$0: PAGE_SIZE '$page_size' is not a non-negative integer" >&2
  exit 2
fi
# Page tokens are URL-safe base64.
if [[ ! "$page_token" =~ ^[A-Za-z0-9_=-]*$ ]]; then
  echo "$0: PAGE_TOKEN is not a nextPageToken" >&2
  exit 2
fi
if [[ "$include_deleted" != 0 && "$include_deleted" != 1 ]]; then
  echo "$0: INCLUDE_DELETED must be 0 or 1" >&2
  exit 2
fi
body="{\"companyNumber\":\"$number\",\"resourceKinds\":[$kinds],\"pageSize\":$page_size"
if [[ -n "$page_token" ]]; then
  body="$body,\"pageToken\":\"$page_token\""
fi
if [[ "$include_deleted" == 1 ]]; then
  body="$body,\"includeDeleted\":true"
fi
body="$body}"
exec grpcurl -plaintext -d "$body" "$ADDR" \
  chstream.v1.CompanyStream/ListCompanyResources
