#!/usr/bin/env bash
# Coverage-guided fuzzing of one target with libFuzzer and AddressSanitizer.
# usage: scripts/fuzz.sh TARGET MINUTES      (targets: yaml cel cron regex snapshot index frame policy)
#
# Builds drplan-fuzz instrumented into .build-fuzz/ (SwiftPM's own -sanitize=fuzzer links
# libFuzzer's main over the executable's, so the coverage flags and libFuzzer's no-main
# runtime are given by hand), copies the seed corpus Tests/Fuzz/corpus/TARGET into
# .build-fuzz/corpus/TARGET, where libFuzzer adds what it finds, and runs for MINUTES.
# Leak detection is off (-detect_leaks=0, ASAN_OPTIONS=detect_leaks=0): LeakSanitizer reports the Swift runtime's one-time initialisation of
# globals (a `static let` table) as a leak on the first input. A crash or a hang (over 10 s for one input) leaves its input as .build-fuzz/crash-*,
# leak-* or timeout-*: copy it into Tests/Fuzz/crashers/TARGET/ once fixed, so CI replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:?usage: scripts/fuzz.sh TARGET MINUTES}"
minutes="${2:?usage: scripts/fuzz.sh TARGET MINUTES}"
clang_rt="$(dirname "$(dirname "$(command -v swift)")")/lib/clang"
fuzzer_lib="$(ls "$clang_rt"/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a | head -1)"
swift build -c release --product drplan-fuzz --scratch-path .build-fuzz \
  -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp \
  -Xlinker --undefined=LLVMFuzzerRunDriver -Xlinker "$fuzzer_lib" -Xlinker -lstdc++
mkdir -p ".build-fuzz/corpus/$target" ".build-fuzz/artifacts/$target"
cp -n "Tests/Fuzz/corpus/$target"/* ".build-fuzz/corpus/$target/" 2>/dev/null || true
extra=()
[ -d "Tests/Fuzz/crashers/$target" ] && extra+=("Tests/Fuzz/crashers/$target")
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
exec .build-fuzz/release/drplan-fuzz "$target" ".build-fuzz/corpus/$target" "${extra[@]}" \
  -max_total_time=$((minutes * 60)) -timeout=10 -rss_limit_mb=4096 -detect_leaks=0 -print_final_stats=1 \
  -artifact_prefix=".build-fuzz/artifacts/$target/"
