#!/usr/bin/env bash
# GetCompany: the current state of one company, from the companies stream.
# NOT_FOUND (grpcurl exit code 69) if chstream has not seen it.
#
#   ./company.sh SC571653
#   ./company.sh 00000006
set -euo pipefail
ADDR="${ADDR:-127.0.0.1:50051}"

if [[ $# -ne 1 ]]; then
  echo "usage: $0 COMPANY_NUMBER" >&2
  exit 2
fi
number="$1"
# 8 characters, digits or a 2-letter prefix and 6 digits; the server
# normalises case and surrounding space. Checked here only so that the value
# cannot break the JSON below.
if [[ ! "$number" =~ ^[A-Za-z0-9\ ]{1,12}$ ]]; then
  echo "$0: '$number' is not a company number such as SC571653" >&2
  exit 2
fi
exec grpcurl -plaintext -d "{\"companyNumber\":\"$number\"}" "$ADDR" \
  chstream.v1.CompanyStream/GetCompany
