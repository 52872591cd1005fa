# lib.sh — what the kernel benchmarks share; sourced, not run.

now() { date +%s.%N; }

# baseline_dir HISTORY CONFIG: where build-bench.sh caches its clean-build
# figures, one file per commit, for this history tip and final .config
# (e2e-bench.sh reads them too, so the key lives here only).
baseline_dir() {
  echo "bench/out/baseline-$( (git -C "$1" rev-parse tip; sha256sum < "$2") | sha256sum | cut -c1-16)"
}
