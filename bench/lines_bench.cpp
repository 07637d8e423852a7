// The lines test: a writer thread formats the integers 0..N-1 one per line
// (`os << i << '\n'`), a reader thread reads them back line by line
// (std::getline), through a kernel pipe wrapped in standard buffered
// streams and through userpipe. Reports lines/s; the ratio against the
// kernel row is the point. Also: what creating a pipe costs, heap against
// mirrored against pipe(2).
//
// N is USERPIPE_LINES (default 50000000, the figure); use a smaller
// one while developing, e.g. USERPIPE_LINES=2000000.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <ext/stdio_filebuf.h>
#include <istream>
#include <ostream>
#include <string>
#include <system_error>
#include <thread>
#include <userpipe/pipe.hpp>
#include <userpipe/stream.hpp>

#include "main.hpp"

namespace {

std::size_t const kernel_buffer = 65536;  // the user-side buffer of each kernel stream

std::uint64_t line_count() {
  if (char const* text = std::getenv("USERPIPE_LINES")) return std::strtoull(text, nullptr, 10);
  return 50'000'000;
}

std::string row_name(std::uint64_t n) {
  if (n % 1'000'000 == 0) return std::to_string(n / 1'000'000) + "M";
  if (n % 1'000 == 0) return std::to_string(n / 1'000) + "K";
  return std::to_string(n);
}

/// What the reader must see: N lines and this many bytes.
std::uint64_t expected_bytes(std::uint64_t n) {
  std::uint64_t total = 0;
  for (std::uint64_t digits = 1, low = 0, high = 10; low < n; ++digits, low = high, high *= 10)
    total += (std::min(high, n) - low) * (digits + 1);
  return total;
}

struct tally {
  std::uint64_t lines = 0;
  std::uint64_t bytes = 0;
};

/// Runs one writer thread and the reader on this thread per iteration, and
/// checks that every line arrived.
template <class Setup>
void run(benchmark::State& state, std::uint64_t n, Setup setup) {
  std::uint64_t const want = expected_bytes(n);
  for (auto _ : state) {
    auto ends = setup();  // not a structured binding: clang 14 cannot capture one
    std::thread writer([&write = ends.first, n] { write(n); });
    tally const got = ends.second();
    writer.join();
    if (got.lines != n || got.bytes != want) {
      state.SkipWithError("the reader did not get every line");
      return;
    }
  }
  // Lines only, not bytes: the report then shows lines/s, the unit.
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
}

// ---- writers ---------------------------------------------------------------

template <class Stream>
void write_lines(Stream& os, std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) os << i << '\n';
}

auto userpipe_writer(userpipe::writer&& w, bool generic) {
  return [w = std::move(w), generic](std::uint64_t n) mutable {
    userpipe::ostream os(std::move(w));
    if (generic)
      write_lines(static_cast<std::ostream&>(os), n);  // what code taking std::ostream& gets
    else
      write_lines(os, n);
  };
}

// ---- readers ---------------------------------------------------------------

tally getline_all(std::istream& is) {
  tally t;
  std::string line;
  while (std::getline(is, line)) {
    ++t.lines;
    t.bytes += line.size() + 1;
  }
  return t;
}

// ---- competitors -------------------------------------------------------------

void kernel_pipe_stream(benchmark::State& state, std::uint64_t n) {
  run(state, n, [] {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
    auto write = [fd = fds[1]](std::uint64_t n) {
      __gnu_cxx::stdio_filebuf<char> buf(fd, std::ios::out, kernel_buffer);  // closes fd when done
      std::ostream os(&buf);
      write_lines(os, n);
    };
    auto read = [fd = fds[0]] {
      __gnu_cxx::stdio_filebuf<char> buf(fd, std::ios::in, kernel_buffer);
      std::istream is(&buf);
      return getline_all(is);
    };
    return std::pair(std::move(write), std::move(read));
  });
}

void userpipe_stream(benchmark::State& state, std::uint64_t n, bool mirrored, bool generic) {
  run(state, n, [mirrored, generic] {
    auto [r, w] = userpipe::make_pipe({.mirrored = mirrored});
    auto read = [r = std::move(r)]() mutable {
      userpipe::istream is(std::move(r));
      return getline_all(is);
    };
    return std::pair(userpipe_writer(std::move(w), generic), std::move(read));
  });
}

void userpipe_read_line_view(benchmark::State& state, std::uint64_t n, bool mirrored) {
  run(state, n, [mirrored] {
    auto [r, w] = userpipe::make_pipe({.mirrored = mirrored});
    auto read = [r = std::move(r)]() mutable {
      tally t;
      std::string_view line;
      while (r.read_line_view(line)) {
        ++t.lines;
        t.bytes += line.size() + 1;
      }
      return t;
    };
    return std::pair(userpipe_writer(std::move(w), false), std::move(read));
  });
}

void userpipe_read_line(benchmark::State& state, std::uint64_t n) {
  run(state, n, [] {
    auto [r, w] = userpipe::make_pipe();
    auto read = [r = std::move(r)]() mutable {
      tally t;
      std::string line;
      while (r.read_line(line)) {
        ++t.lines;
        t.bytes += line.size() + 1;
      }
      return t;
    };
    return std::pair(userpipe_writer(std::move(w), false), std::move(read));
  });
}

// ---- creation ----------------------------------------------------------------

void create_kernel_pipe(benchmark::State& state, int capacity) {
  for (auto _ : state) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      state.SkipWithError("pipe2 failed");
      return;
    }
    // pipe(2) has a fixed 64 KiB capacity unless F_SETPIPE_SZ is paid for too.
    if (capacity != 65536) ::fcntl(fds[1], F_SETPIPE_SZ, capacity);
    ::close(fds[0]);
    ::close(fds[1]);
  }
  state.SetItemsProcessed(state.iterations());
}

void create_userpipe(benchmark::State& state, std::size_t capacity, bool mirrored) {
  for (auto _ : state) {
    auto ends = userpipe::make_pipe({.capacity = capacity, .mirrored = mirrored});
    benchmark::DoNotOptimize(ends);
  }
  state.SetItemsProcessed(state.iterations());
}

void register_all() {
  std::uint64_t const n = line_count();
  std::string const row = "/" + row_name(n);
  auto lines = [&](char const* competitor, auto fn) {
    benchmark::RegisterBenchmark((std::string("lines/") + competitor + row).c_str(), fn)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  };
  lines("kernel_pipe_stream", [n](benchmark::State& s) { kernel_pipe_stream(s, n); });
  lines("userpipe_stream", [n](benchmark::State& s) { userpipe_stream(s, n, false, false); });
  lines("userpipe_stream_via_std_ostream", [n](benchmark::State& s) { userpipe_stream(s, n, false, true); });
  lines("userpipe_stream_mirrored", [n](benchmark::State& s) { userpipe_stream(s, n, true, false); });
  lines("userpipe_read_line_view", [n](benchmark::State& s) { userpipe_read_line_view(s, n, false); });
  lines("userpipe_read_line_view_mirrored",
        [n](benchmark::State& s) { userpipe_read_line_view(s, n, true); });
  lines("userpipe_read_line", [n](benchmark::State& s) { userpipe_read_line(s, n); });

  for (auto const& size : {std::pair{65536, "64K"}, std::pair{1 << 20, "1M"}}) {
    int const capacity = size.first;
    char const* const label = size.second;
    auto create = [&](char const* competitor, auto fn) {
      benchmark::RegisterBenchmark((std::string("make_pipe/") + competitor + "/" + label).c_str(), fn)
          ->UseRealTime();
    };
    create("kernel_pipe", [capacity](benchmark::State& s) { create_kernel_pipe(s, capacity); });
    create("userpipe_heap", [capacity](benchmark::State& s) { create_userpipe(s, capacity, false); });
    create("userpipe_mirrored", [capacity](benchmark::State& s) { create_userpipe(s, capacity, true); });
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  return bench::run(argc, argv);
}
