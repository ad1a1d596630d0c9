#!/usr/bin/env bash
# run_fuzz.sh HARNESS SEED_DIR SECONDS [libFuzzer flags...]: fuzzes HARNESS for SECONDS, starting
# from the committed seeds, with new inputs going to a scratch corpus (the committed one is not
# touched). A crash, leak, sanitizer report or timeout fails the run and leaves the input as
# crash-*/leak-*/timeout-* in the scratch folder, whose path is printed; copy it to
# fuzz/regressions/NAME/ and it becomes a regression input that tests/test_fuzz_regressions.cpp
# replays in every build.
set -euo pipefail
harness=$(realpath "$1") seeds=$(realpath "$2") seconds=$3
shift 3
work=$(mktemp -d "${TMPDIR:-/tmp}/fusedvae_fuzz_$(basename "$harness").XXXXXX")
mkdir -p "$work/corpus"
cd "$work"
echo "fuzz: $(basename "$harness") for ${seconds} s, scratch folder $work"
status=0
"$harness" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -print_final_stats=1 "$@" "$work/corpus" "$seeds" >"$work/log" 2>&1 || status=$?
grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+ +DONE" "$work/log" || true
if [ "$status" -ne 0 ]; then
  tail -60 "$work/log"
  echo "fuzz: $(basename "$harness") FAILED (exit $status); inputs kept in $work"
  exit 1
fi
rm -rf "$work"
