// The main every benchmark binary shares: register, then run with Google
// Benchmark's flags. Whether a run failed is judged from the JSON by
// bench_report (scripts/bench), which sees every repetition.
#pragma once

#include <benchmark/benchmark.h>

namespace bench {

/// Runs the registered benchmarks; main's exit status (1 for an unknown flag).
inline int run(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace bench
