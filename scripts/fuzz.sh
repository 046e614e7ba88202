#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ with libFuzzer's coverage instrumentation on the stable
# toolchain (the flags `cargo fuzz build --sanitizer none` passes, without cargo-fuzz or
# nightly) and runs each one for FUZZ_SECS seconds from its seeds in fuzz/seeds/ and its
# growing corpus in fuzz/corpus/ (not committed). Stops at the first crash, whose input
# libFuzzer leaves in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [target...]     FUZZ_SECS=60 by default; every target when none named
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs=${FUZZ_SECS:-60}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(signature payload trigger command branch)
# libFuzzer's runtime is C++ (built by libfuzzer-sys).
command -v c++ >/dev/null || { echo "fuzz: needs a C++ compiler (Debian: apt-get install g++)" >&2; exit 1; }

host=$(rustc -vV | sed -n 's/^host: //p')
# An explicit --target keeps these flags off build scripts and proc macros.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
-Cllvm-args=-simplifycfg-branch-fold-threshold=0 --cfg fuzzing -Cdebug-assertions"
echo "== building the fuzz targets (${targets[*]})"
bins=()
for target in "${targets[@]}"; do bins+=(--bin "$target"); done
cargo build --locked --target "$host" "${bins[@]}"

summary=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  echo "== fuzzing $target for ${secs}s"
  log=$(mktemp)
  if ! "target/$host/debug/$target" -max_total_time="$secs" -print_final_stats=1 \
      -artifact_prefix="artifacts/$target/" "corpus/$target" "seeds/$target" 2>"$log"; then
    tail -n 40 "$log" >&2
    echo "fuzz: $target found a crash; its input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  summary+=("$target: $runs executions in ${secs}s, no crash; fuzz/corpus/$target holds $(ls "corpus/$target" | wc -l) inputs")
  rm -f "$log"
done
printf '== fuzz summary\n'
printf '  %s\n' "${summary[@]}"
