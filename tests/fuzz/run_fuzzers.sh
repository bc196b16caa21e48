#!/usr/bin/env bash
# Builds every libFuzzer harness with clang (ASan + UBSan) and runs each for a bounded time on a
# copy of its seed corpus; any crash, leak or violated invariant fails the run.
#   tests/fuzz/run_fuzzers.sh SECONDS_PER_HARNESS [WORK_DIR]
set -euo pipefail
seconds=${1:-30}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=${2:-$(mktemp -d)}
mkdir -p "$work"
if ! command -v clang++ >/dev/null 2>&1; then
  echo "run_fuzzers: FAIL: clang++ not installed (tools/setup.sh installs it)"
  exit 1
fi

# harness → the sources and libraries it needs
declare -A sources=(
  [classify_fuzz]="src/dataplane/classify.cpp src/dataplane/flow_table.cpp"
  [http_request_fuzz]="src/core/http_request.cpp"
  [prompt_extractor_fuzz]="src/core/prompt_extractor.cpp"
  [canonicalizer_fuzz]="src/core/canonicalizer.cpp"
  [usage_scanner_fuzz]="src/core/usage_scanner.cpp src/core/event_stream.cpp"
  [completion_extractor_fuzz]="src/core/completion_extractor.cpp src/core/event_stream.cpp"
)
declare -A libraries=(
  [classify_fuzz]="$(pkg-config --libs libxxhash)"
  [canonicalizer_fuzz]="$(pkg-config --cflags --libs libutf8proc icu-uc icu-i18n)"
)

failures=0
ran=0
for harness in "${!sources[@]}"; do
  source_file="$repo/tests/fuzz/${harness}.cpp"
  [[ -f $source_file ]] || continue
  name=${harness%_fuzz}
  binary="$work/$harness"
  srcs=()
  for s in ${sources[$harness]}; do srcs+=("$repo/$s"); done
  # shellcheck disable=SC2086
  clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$repo/include" "$source_file" "${srcs[@]}" ${libraries[$harness]:-} -o "$binary"
  corpus="$work/corpus_$name"
  mkdir -p "$corpus"
  cp -r "$repo/tests/fuzz/corpus/$name/." "$corpus/" 2>/dev/null || true
  ran=$((ran + 1))
  if "$binary" -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=2048 -artifact_prefix="$work/${name}-" \
    "$corpus" >"$work/$name.log" 2>&1; then
    echo "PASS $harness: $(grep -Eo 'Done [0-9]+ runs' "$work/$name.log" | tail -1) in ${seconds} s"
  else
    echo "FAIL $harness: see $work/$name.log; reproducer: $(ls "$work/${name}-"* 2>/dev/null | head -1)"
    tail -30 "$work/$name.log"
    failures=$((failures + 1))
  fi
done
echo "run_fuzzers: $ran harness(es), $failures failure(s)"
((ran > 0 && failures == 0))
