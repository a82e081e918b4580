#!/usr/bin/env bash
# Runs every fuzz target for a fixed time (default 30 s each) from its seeds and its corpus;
# fails on the first crash, leak or failed invariant (libFuzzer exits non-zero and leaves the
# input in fuzz/artifacts/<target>/). Installs cargo-fuzz if it is missing.
#
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
#   FUZZ_SANITIZER=none   no AddressSanitizer (faster; the default is address)
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-30}
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo-fuzz needs a nightly compiler for its -Z flags; without one, the stable compiler is
# told to accept them (RUSTC_BOOTSTRAP) and the sanitizer is left out.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
  sanitizer=${FUZZ_SANITIZER:-address}
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
  sanitizer=none
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <("${fuzz[@]}" list)
"${fuzz[@]}" build -O -s "$sanitizer"
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "fuzz: $t for ${secs}s"
  "${fuzz[@]}" run -O -s "$sanitizer" "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 2>"corpus/$t.log" ||
    { tail -n 40 "corpus/$t.log" >&2; echo "fuzz: $t FAILED" >&2; exit 1; }
  grep -E '^stat::number_of_executed_units' "corpus/$t.log" | sed "s/^/fuzz: $t /"
done
echo "fuzz: every target ran ${secs}s without a crash"
