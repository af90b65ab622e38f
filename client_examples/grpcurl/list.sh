#!/usr/bin/env bash
# Lists the services chstream exposes (via server reflection), or the methods
# of one service.
#
#   ./list.sh                            # all services
#   ./list.sh chstream.v1.CompanyStream  # the methods of one
#   ADDR=10.0.0.5:50051 ./list.sh
set -euo pipefail
ADDR="${ADDR:-127.0.0.1:50051}"

if [[ $# -gt 1 ]]; then
  echo "usage: $0 [SERVICE]" >&2
  exit 2
fi
exec grpcurl -plaintext "$ADDR" list "$@"
