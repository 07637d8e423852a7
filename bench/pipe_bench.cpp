// The headline comparison: userpipe against the kernel's pipes and a
// lock-free queue, thread to thread, in one binary and one run.
//
// Tables (benchmark names are "<table>/<competitor>/<row>"):
//   thread_to_thread  a writer thread writes chunks of <row> bytes, a reader
//                     thread reads with a 64 KiB buffer until EOF;
//   one_cpu           the same with both threads pinned to one CPU;
//   round_trip        <row>-byte ping-pong through two pipes (latency);
//   create            make a pipe pair and destroy it;
//   stability         the 64-byte thread_to_thread row run as 10 repetitions
//                     in a row (median, min and max): how far one run of the
//                     same binary strays from the next (userpipe, kernel_pipe,
//                     boost_spsc).
// Competitors: userpipe (64 KiB ring), userpipe_1m (1 MiB ring), kernel_pipe
// (pipe2, default 64 KiB), kernel_pipe_1m (F_SETPIPE_SZ 1 MiB), socketpair
// (AF_UNIX stream), boost_spsc (boost::lockfree::spsc_queue<char>, 64 KiB,
// bulk push/pop, blocking by spinning), memcpy (one thread's copy: the
// ceiling).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <userpipe/pipe.hpp>
#include <vector>

#include "competitors.hpp"
#include "main.hpp"

namespace {

constexpr std::size_t read_buffer_size = 65536;

using bench::boost_spsc;
using bench::fail;
using bench::fd_pipe;
using bench::userpipe_pipe;

// ---- affinity ------------------------------------------------------------------

struct pin_to_cpu0 {
  cpu_set_t old{};
  bool active;
  explicit pin_to_cpu0(bool on) : active(on) {
    if (!active) return;
    pthread_getaffinity_np(pthread_self(), sizeof old, &old);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    pthread_setaffinity_np(pthread_self(), sizeof one, &one);
  }
  ~pin_to_cpu0() {
    if (active) pthread_setaffinity_np(pthread_self(), sizeof old, &old);
  }
};

// ---- the harnesses ---------------------------------------------------------------

/// Writer on the benchmark thread, one write of `size` bytes per iteration;
/// reader on another thread draining until EOF.
template <class Pipe>
void stream(benchmark::State& state, Pipe& pipe, bool one_cpu) {
  std::size_t const size = static_cast<std::size_t>(state.range(0));
  state.SetLabel(std::to_string(size));
  std::vector<std::byte> chunk(size, std::byte{'x'});
  std::atomic<std::uint64_t> received{0}, reads{0};
  pin_to_cpu0 pin(one_cpu);
  std::thread reader([&] {
    pin_to_cpu0 reader_pin(one_cpu);
    std::vector<std::byte> buf(read_buffer_size);
    std::uint64_t total = 0, calls = 0;
    while (std::size_t n = pipe.read_some(buf.data(), buf.size())) {
      total += n;
      ++calls;
    }
    received = total;
    reads = calls;
  });
  for (auto _ : state) pipe.write_all(chunk.data(), size);
  pipe.close_write();
  reader.join();
  if (received != state.iterations() * size) state.SkipWithError("bytes lost");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
  state.SetItemsProcessed(state.iterations());
  // Which regime the run was in: one read per write (the reader keeps up
  // and the index lines move once per write) or many writes per read.
  state.counters["writes_per_read"] =
      static_cast<double>(state.iterations()) / static_cast<double>(std::max<std::uint64_t>(reads, 1));
}

void userpipe_stream(benchmark::State& state, std::size_t capacity, bool one_cpu) {
  userpipe_pipe p(capacity);
  stream(state, p, one_cpu);
  auto s = p.r.stats();
  double const mib = static_cast<double>(s.bytes_read + 1) / 1048576.0;
  state.counters["syscalls_per_MiB"] = static_cast<double>(userpipe_pipe::syscalls_of(s)) / mib;
  // Of those, the futex calls (sleeps and wakes); the rest are sched_yields.
  state.counters["futex_per_MiB"] = static_cast<double>(s.reader_sleeps + s.writer_sleeps + s.wakes) / mib;
  state.counters["reader_waits_per_write"] =
      static_cast<double>(s.reader_waits) /
      static_cast<double>(std::max<std::int64_t>(state.iterations(), 1));
}

void kernel_stream(benchmark::State& state, std::size_t size, bool one_cpu) {
  auto p = bench::make_kernel_pipe(size);
  stream(state, *p, one_cpu);
}

void socketpair_stream(benchmark::State& state) {
  auto p = bench::make_socketpair();
  stream(state, *p, false);
}

void boost_stream(benchmark::State& state) {
  auto q = std::make_unique<boost_spsc>();
  stream(state, *q, false);
}

/// `size` bytes there and back through two pipes: one round trip per
/// iteration, the latency a request/response protocol sees.
template <class Pipe>
void round_trip(benchmark::State& state, Pipe& there, Pipe& back) {
  std::size_t const size = static_cast<std::size_t>(state.range(0));
  std::thread echo([&] {
    std::vector<std::byte> buf(size);
    for (;;) {
      std::size_t got = 0;
      while (got < size) {
        std::size_t n = there.read_some(buf.data() + got, size - got);
        if (n == 0) return back.close_write();
        got += n;
      }
      back.write_all(buf.data(), size);
    }
  });
  std::vector<std::byte> msg(size, std::byte{'p'}), reply(size);
  for (auto _ : state) {
    there.write_all(msg.data(), size);
    std::size_t got = 0;
    while (got < size) got += back.read_some(reply.data() + got, size - got);
  }
  there.close_write();
  echo.join();
  state.SetItemsProcessed(state.iterations());
}

void userpipe_round_trip(benchmark::State& state) {
  userpipe_pipe a(65536), b(65536);
  round_trip(state, a, b);
}

void kernel_round_trip(benchmark::State& state) {
  auto a = bench::make_kernel_pipe(), b = bench::make_kernel_pipe();
  round_trip(state, *a, *b);
}

/// The ceiling: one thread copying <row>-byte chunks into a 64 KiB buffer,
/// as a writer into a ring that never fills (a pipe also copies them out).
void memcpy_ceiling(benchmark::State& state) {
  std::size_t const size = static_cast<std::size_t>(state.range(0));
  std::vector<std::byte> chunk(size, std::byte{'x'}), ring(std::max<std::size_t>(65536, size));
  std::size_t offset = 0;
  for (auto _ : state) {
    if (offset + size > ring.size()) offset = 0;
    std::memcpy(ring.data() + offset, chunk.data(), size);
    benchmark::ClobberMemory();
    offset += size;
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
  state.SetItemsProcessed(state.iterations());
}

void userpipe_create(benchmark::State& state) {
  for (auto _ : state) {
    auto pair = userpipe::make_pipe();
    benchmark::DoNotOptimize(pair);
  }
  state.SetItemsProcessed(state.iterations());
}

void kernel_create(benchmark::State& state) {
  for (auto _ : state) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) fail("pipe2");
    benchmark::DoNotOptimize(fds);
    ::close(fds[0]);
    ::close(fds[1]);
  }
  state.SetItemsProcessed(state.iterations());
}

void register_all() {
  std::vector<std::int64_t> const sizes = {64, 512, 4096, 65536, 1 << 20};
  auto each_size = [&](std::string const& name, auto fn) {
    for (auto size : sizes)
      benchmark::RegisterBenchmark((name + "/" + std::to_string(size)).c_str(), fn)
          ->Arg(size)
          ->UseRealTime()
          ->MinTime(0.3);
  };
  each_size("thread_to_thread/userpipe", [](benchmark::State& s) { userpipe_stream(s, 65536, false); });
  each_size("thread_to_thread/userpipe_1m", [](benchmark::State& s) { userpipe_stream(s, 1 << 20, false); });
  each_size("thread_to_thread/kernel_pipe", [](benchmark::State& s) { kernel_stream(s, 0, false); });
  each_size("thread_to_thread/kernel_pipe_1m", [](benchmark::State& s) { kernel_stream(s, 1 << 20, false); });
  each_size("thread_to_thread/socketpair", socketpair_stream);
  each_size("thread_to_thread/boost_spsc", boost_stream);
  each_size("thread_to_thread/memcpy", memcpy_ceiling);

  for (std::int64_t size : {64, 4096, 65536}) {
    auto row = "/" + std::to_string(size);
    benchmark::RegisterBenchmark(("one_cpu/userpipe" + row).c_str(),
                                 [](benchmark::State& s) { userpipe_stream(s, 65536, true); })
        ->Arg(size)
        ->UseRealTime()
        ->MinTime(0.3);
    benchmark::RegisterBenchmark(("one_cpu/kernel_pipe" + row).c_str(),
                                 [](benchmark::State& s) { kernel_stream(s, 0, true); })
        ->Arg(size)
        ->UseRealTime()
        ->MinTime(0.3);
  }
  // One row, ten repetitions back to back; the median, min and max say how
  // stable the small-write rate is (the aggregates are reported, and
  // bench_report reads the repetitions).
  auto stability = [](char const* name, auto fn) {
    benchmark::RegisterBenchmark(name, fn)
        ->Arg(64)
        ->UseRealTime()
        ->MinTime(0.3)
        ->Repetitions(10)
        ->ComputeStatistics(
            "min", [](std::vector<double> const& v) { return *std::min_element(v.begin(), v.end()); })
        ->ComputeStatistics(
            "max", [](std::vector<double> const& v) { return *std::max_element(v.begin(), v.end()); });
  };
  stability("stability/userpipe/64", [](benchmark::State& s) { userpipe_stream(s, 65536, false); });
  stability("stability/kernel_pipe/64", [](benchmark::State& s) { kernel_stream(s, 0, false); });
  stability("stability/boost_spsc/64", boost_stream);

  benchmark::RegisterBenchmark("round_trip/userpipe/64", userpipe_round_trip)->Arg(64)->UseRealTime();
  benchmark::RegisterBenchmark("round_trip/kernel_pipe/64", kernel_round_trip)->Arg(64)->UseRealTime();
  benchmark::RegisterBenchmark("create/userpipe/64KiB", userpipe_create)->UseRealTime();
  benchmark::RegisterBenchmark("create/kernel_pipe/64KiB", kernel_create)->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  return bench::run(argc, argv);
}
