#!/usr/bin/env bash
# Runs one fuzz target for the suite (tests/fuzz/fuzz.bzl):
#   run_fuzz.sh BINARY CORPUS_DIR SECONDS
# SECONDS = 0: BINARY is the replay build; run every seed in CORPUS_DIR once.
# Otherwise BINARY is a libFuzzer build: fuzz for SECONDS, starting from the
# seeds (new inputs go to a scratch directory, never into the source tree).
# A crashing input is saved in the test's undeclared outputs
# (bazel-testlogs/tests/fuzz/<name>_test/test.outputs/) and its path and
# stack are in the test log.
set -euo pipefail
bin="$1"
corpus="$2"
seconds="$3"
if [ "$seconds" = 0 ]; then
  exec "$bin" "$corpus"
fi
work="${TEST_TMPDIR:-/tmp}/corpus"
artifacts="${TEST_UNDECLARED_OUTPUTS_DIR:-${TEST_TMPDIR:-/tmp}}"
mkdir -p "$work" "$artifacts"
exec "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$artifacts/" "$work" "$corpus"
