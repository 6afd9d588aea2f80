#!/usr/bin/env bash
# `make perf-native`: each filter's request path natively, over the fake host, under valgrind's
# callgrind. For every crate given that has examples/request_path.rs: builds it (release, its own target
# directory so the workspace's release builds are left alone), runs it with REQUESTS requests after
# WARMUP first, counting only inside its measured_requests function (--toggle-collect), and prints
# instructions per request and the ten functions that cost most (self cost, callgrind_annotate).
# Output files: target/perf-native/<crate>.callgrind.
# Usage: tools/perf/native.sh REQUESTS WARMUP CRATE...
set -euo pipefail
requests=$1 warmup=$2
shift 2
out=target/perf-native
command -v valgrind >/dev/null || { echo "valgrind is missing (Debian: apt-get install valgrind)"; exit 1; }
mkdir -p "$out"
found=0
for crate in "$@"; do
  [ -f "filters/$crate/examples/request_path.rs" ] || continue
  found=1
  example="${crate//-/_}_request_path"   # each crate names its example apart (Cargo.toml [[example]])
  cargo build --quiet --release --target-dir "$out/build" -p "$crate" --example "$example"
  bin="$out/$crate-request_path"
  cp "$out/build/release/examples/$example" "$bin"
  profile="$out/$crate.callgrind"
  REQUESTS=$requests WARMUP=$warmup valgrind --tool=callgrind --callgrind-out-file="$profile" \
    --toggle-collect='*measured_requests*' --compress-strings=no "$bin" 2>"$out/$crate.valgrind.log"
  annotated=$(callgrind_annotate --inclusive=no --threshold=100 "$profile")
  total=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' <<<"$annotated")
  echo "== $crate: $((total / requests)) instructions per request ($requests requests after $warmup warm-up; $profile)"
  # Function lines ("Ir (pct) file:function [object]") follow the "file:function" heading and its rule;
  # the object's path is dropped.
  awk '/file:function/ {table = 1; getline; next} table && NF {sub(/ \[[^]]*\]$/, ""); print "  " $0; if (++n == 10) exit}' <<<"$annotated"
done
[ $found = 1 ] || echo "no filter has examples/request_path.rs yet"
