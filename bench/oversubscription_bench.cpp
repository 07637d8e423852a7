// Many more threads than CPUs: 64 pipes, each with its own writer and reader
// thread (128 threads), all streaming at once; aggregate throughput of
// userpipe against the same topology over kernel pipes, in one run.
//
// Table "oversubscription", rows "<pipes>x<chunk>": every writer writes
// chunks of <chunk> bytes, every reader drains with a 64 KiB buffer until
// EOF. Real time per iteration, thread creation included (about 1% of it).
// A spinning waiter
// steals its CPU from the thread it waits for, so this is where a spin
// that is too long shows. "2x" rows are the same code with 2 pipes, 4
// threads on 2 CPUs: two threads per CPU, against 64 per CPU in "64x".
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <latch>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <userpipe/pipe.hpp>
#include <vector>

#include "competitors.hpp"
#include "main.hpp"

namespace {

using bench::userpipe_pipe;

/// The kernel competitor, default-constructible like userpipe_pipe.
struct kernel_pipe {
  std::unique_ptr<bench::fd_pipe> fds = bench::make_kernel_pipe();
  void write_all(std::byte const* p, std::size_t n) { fds->write_all(p, n); }
  std::size_t read_some(std::byte* p, std::size_t n) { return fds->read_some(p, n); }
  void close_write() { fds->close_write(); }
  std::uint64_t syscalls() const { return 0; }
};

template <class Pipe>
void many_pipes(benchmark::State& state, std::size_t pipes, std::size_t chunk) {
  // Bytes per pipe per iteration: enough that thread start-up is noise.
  std::uint64_t const per_pipe =
      (chunk < 1024 ? std::uint64_t{256} << 10 : std::uint64_t{2} << 20) * 64 / pipes;
  std::uint64_t const writes = per_pipe / chunk;
  std::uint64_t syscalls = 0, lost = 0;
  for (auto _ : state) {
    std::vector<std::unique_ptr<Pipe>> p;
    for (std::size_t i = 0; i < pipes; ++i) p.push_back(std::make_unique<Pipe>());
    std::latch start(static_cast<std::ptrdiff_t>(2 * pipes + 1));
    std::vector<std::uint64_t> received(pipes);
    std::vector<std::thread> threads;
    threads.reserve(2 * pipes);
    for (std::size_t i = 0; i < pipes; ++i) {
      threads.emplace_back([&, i] {
        std::vector<std::byte> data(chunk, std::byte{'x'});
        start.arrive_and_wait();
        for (std::uint64_t k = 0; k < writes; ++k) p[i]->write_all(data.data(), chunk);
        p[i]->close_write();
      });
      threads.emplace_back([&, i] {
        std::vector<std::byte> buf(65536);
        start.arrive_and_wait();
        std::uint64_t total = 0;
        while (std::size_t n = p[i]->read_some(buf.data(), buf.size())) total += n;
        received[i] = total;
      });
    }
    start.arrive_and_wait();
    for (auto& t : threads) t.join();
    for (std::size_t i = 0; i < pipes; ++i) {
      lost += writes * chunk - received[i];
      syscalls += p[i]->syscalls();
    }
  }
  if (lost != 0) state.SkipWithError("bytes lost");
  auto const bytes = static_cast<double>(state.iterations()) * static_cast<double>(pipes * writes * chunk);
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  // Only where it means something: a constant 0 makes the JSON's
  // coefficient-of-variation aggregate NaN, which is not JSON.
  if constexpr (std::is_same_v<Pipe, userpipe_pipe>)
    state.counters["syscalls_per_MiB"] = static_cast<double>(syscalls) * 1048576.0 / bytes;
}

void register_all() {
  for (std::size_t pipes : {2, 64}) {
    for (std::size_t chunk : {64, 4096, 65536}) {
      std::string const row = "/" + std::to_string(pipes) + "x" + std::to_string(chunk);
      benchmark::RegisterBenchmark(("oversubscription/userpipe" + row).c_str(),
                                   [=](benchmark::State& s) { many_pipes<userpipe_pipe>(s, pipes, chunk); })
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond)
          ->Iterations(3);
      benchmark::RegisterBenchmark(("oversubscription/kernel_pipe" + row).c_str(),
                                   [=](benchmark::State& s) { many_pipes<kernel_pipe>(s, pipes, chunk); })
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond)
          ->Iterations(3);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  return bench::run(argc, argv);
}
