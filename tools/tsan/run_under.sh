#!/bin/sh
# Runs a test (or `bazel run` binary) built with --config=tsan with the
# checked-in suppressions for uninstrumented system libraries, and with
# libabsl_sync_annotations.so preloaded so that tsan sees Debian's
# (uninstrumented) absl::Mutex as a lock (absl_sync_annotations.cc).
# .bazelrc passes it as --run_under=//tools/tsan:run_under: Bazel adds this
# script and its data (suppressions.txt) to every test's runfiles, so the file
# is found next to the script inside the sandbox, whatever the output base.
# Anything already in TSAN_OPTIONS is kept (and wins: later options override).
here="$(dirname "$0")"
supp="$here/suppressions.txt"
if [ ! -f "$supp" ] && [ -f "$0.runfiles/chstream/tools/tsan/suppressions.txt" ]; then
  supp="$0.runfiles/chstream/tools/tsan/suppressions.txt"
fi
if [ ! -f "$supp" ]; then
  echo "tools/tsan/run_under.sh: suppressions.txt not found next to $0" >&2
  exit 2
fi
# Absolute, because tests that start child processes may change directory.
supp_dir="$(cd "$(dirname "$supp")" && pwd)"
supp="$supp_dir/$(basename "$supp")"
annotations="$supp_dir/libabsl_sync_annotations.so"
if [ ! -f "$annotations" ]; then
  echo "tools/tsan/run_under.sh: $annotations not found" >&2
  exit 2
fi
export LD_PRELOAD="$annotations${LD_PRELOAD:+ $LD_PRELOAD}"
export TSAN_OPTIONS="suppressions=$supp second_deadlock_stack=1 history_size=4${TSAN_OPTIONS:+ $TSAN_OPTIONS}"
exec "$@"
