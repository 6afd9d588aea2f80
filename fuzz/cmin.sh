#!/usr/bin/env bash
# Folds what fuzzing runs discovered (fuzz/target/corpus/<target>) into the kept corpus, minimised: the
# seeds (seed-*) and crash regressions (regression-*) always stay; of every other input only those that
# add coverage beyond them are kept (libFuzzer -merge=1). Usage: fuzz/cmin.sh [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"

bin=target/x86_64-unknown-linux-gnu/release
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=($(ls fuzz_targets | sed 's/\.rs$//'))
fi
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "target/corpus/$t"
  find "corpus/$t" -type f ! -name 'seed-*' ! -name 'regression-*' -exec mv -t "target/corpus/$t/" {} +
  "$bin/$t" -set_cover_merge=1 -use_counters=0 "corpus/$t" "target/corpus/$t" >"target/$t.cmin.log" 2>&1
  echo "$t: $(ls "corpus/$t" | wc -l) inputs, $(du -sk "corpus/$t" | cut -f1) KB"
done
