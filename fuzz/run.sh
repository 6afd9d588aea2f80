#!/usr/bin/env bash
# Runs every fuzz target (already built by `make fuzz-build`) for SECONDS each and prints, per target,
# the executions, executions per second and corpus size. Usage: fuzz/run.sh SECONDS [TARGET...]
#
# Each target reads its kept corpus (fuzz/corpus/<target>, seeds and past findings) and writes what it
# discovers to fuzz/target/corpus/<target>, so a run never grows the repository; `make fuzz-cmin`
# merges the new coverage back in, minimised. A crash stops the run: its input is in
# fuzz/artifacts/<target>/ and the exit status is non-zero.
set -uo pipefail
cd "$(dirname "$0")"

seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
bin=target/x86_64-unknown-linux-gnu/release
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=($(ls fuzz_targets | sed 's/\.rs$//'))
fi

printf '%-24s %12s %10s %8s\n' target execs execs/s corpus
total=0
for t in "${targets[@]}"; do
  mkdir -p "target/corpus/$t" "corpus/$t" "artifacts/$t"
  log="target/$t.log"
  # -rss_limit_mb: a leak or an unbounded allocation on hostile input is a finding too.
  if ! "$bin/$t" "target/corpus/$t" "corpus/$t" -max_total_time="$seconds" -print_final_stats=1 \
      -rss_limit_mb=1024 -artifact_prefix="artifacts/$t/" >"$log" 2>&1; then
    echo "FAILED: $t (log: fuzz/$log; input: fuzz/artifacts/$t/)"
    grep -m1 -A4 -E 'panicked at|ERROR: libFuzzer' "$log"
    exit 1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  units=$(grep -oE 'corp: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
  printf '%-24s %12s %10s %8s\n' "$t" "$execs" "$rate" "$units"
  total=$((total + execs))
done
printf '%-24s %12s\n' total "$total"
