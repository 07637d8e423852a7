// A child's stdout into this process: the child (`head -c N /dev/zero`, a
// cat of N bytes) writes into a kernel pipe; this process gets the bytes
//   kernel_pipe     read(2) loop into a 64 KiB buffer (one copy)
//   userpipe_pump   a thread runs userpipe::pump(fd, writer): read(2)
//                   straight into the ring (one copy); the reader peeks and
//                   consumes in place
//   userpipe_spawn  the same through userpipe::spawn's own pump thread
//   userpipe_async_pump   one thread, no pump thread: an io_context runs
//                   userpipe::async_pump(stream_descriptor, async_writer)
//                   (read(2) straight into the ring) and the consumer, which
//                   async_waits on the ring and peeks/consumes in place
//   userpipe_spawn_loop   the same through userpipe::spawn(io, ...): the
//                   event-loop mode of spawn (userpipe/asio_process.hpp)
// The expectation is parity: the same single copy by the kernel, the ring's
// handoff costing no system call. The userpipe rows pay one thread switch
// more (the pump thread), which is what this table shows honestly.
//
// Table child_stdin is the other direction, this process feeding `cat
// >/dev/null`; see child_stdin() for its competitors.
//
// Counters user_s and sys_s are this process's CPU (getrusage RUSAGE_SELF;
// the child is never included) per transfer. Size: USERPIPE_PUMP_MIB
// (default 1024).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <thread>
#include <userpipe/fd.hpp>
#include <userpipe/process.hpp>
#ifdef USERPIPE_BENCH_EVENT_LOOP
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <userpipe/asio_process.hpp>
#endif
#include <vector>

#include "competitors.hpp"
#include "main.hpp"

extern char** environ;

namespace {

std::uint64_t transfer_bytes() {
  char const* v = std::getenv("USERPIPE_PUMP_MIB");
  return (v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : 1024) << 20;
}

[[noreturn]] void fail(char const* what) {
  std::perror(what);
  std::exit(1);
}

double seconds(timeval tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6; }

/// Starts `head -c bytes /dev/zero` with stdout on a new kernel pipe; returns
/// the pid and sets `read_fd` to the pipe's read end.
pid_t start_cat(std::uint64_t bytes, int& read_fd) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) fail("pipe2");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  std::string count = std::to_string(bytes);
  char const* argv[] = {"head", "-c", count.c_str(), "/dev/zero", nullptr};
  pid_t pid;
  int rc = posix_spawnp(&pid, "head", &actions, nullptr, const_cast<char* const*>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc != 0) {
    errno = rc;
    fail("posix_spawnp head");
  }
  read_fd = fds[0];
  return pid;
}

/// Starts `cat` with stdin on a new kernel pipe and stdout on /dev/null;
/// returns the pid and sets `write_fd` to the pipe's write end.
pid_t start_cat_to_null(int& write_fd) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) fail("pipe2");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[0], 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  char const* argv[] = {"cat", nullptr};
  pid_t pid;
  int rc = posix_spawnp(&pid, "cat", &actions, nullptr, const_cast<char* const*>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[0]);
  if (rc != 0) {
    errno = rc;
    fail("posix_spawnp cat");
  }
  write_fd = fds[1];
  return pid;
}

void reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("child failed");
}

#ifdef USERPIPE_BENCH_EVENT_LOOP
/// On the loop's thread: waits for the ring, reads it to EOF in place.
class loop_drain {
 public:
  loop_drain(asio::io_context& io, userpipe::reader r) : in_(io, std::move(r)) { wait(); }
  std::uint64_t bytes() const { return n_; }

 private:
  void wait() {
    in_.async_wait([this](std::error_code ec, std::size_t) {
      if (ec) return;  // eof
      for (;;) {
        std::error_code e;
        auto data = in_.pipe_end().try_peek(e);
        if (e == std::errc::resource_unavailable_try_again) return wait();
        if (e || data.empty()) return;
        benchmark::DoNotOptimize(data.data());
        n_ += data.size();
        in_.pipe_end().consume(data.size());
      }
    });
  }
  userpipe::async_reader in_;
  std::uint64_t n_ = 0;
};
#endif

enum class competitor {
  kernel_pipe,
  userpipe_pump,
  userpipe_spawn,
  userpipe_async_pump,
  userpipe_spawn_loop
};

void child_stdout(benchmark::State& state, competitor which) {
  std::uint64_t const bytes = transfer_bytes();
  double user = 0, sys = 0;
  std::uint64_t moved = 0;
  std::vector<char> buffer(65536);
  for (auto _ : state) {
    rusage before{}, after{};
    getrusage(RUSAGE_SELF, &before);
    std::uint64_t got = 0;
    if (which == competitor::kernel_pipe) {
      int fd;
      pid_t pid = start_cat(bytes, fd);
      for (;;) {
        ssize_t n = ::read(fd, buffer.data(), buffer.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail("read");
        if (n == 0) break;
        benchmark::DoNotOptimize(buffer.data());
        got += static_cast<std::uint64_t>(n);
      }
      ::close(fd);
      reap(pid);
    } else if (which == competitor::userpipe_pump) {
      int fd;
      pid_t pid = start_cat(bytes, fd);
      auto [r, w] = userpipe::make_pipe();
      std::thread pumper([fd, w = std::move(w)]() mutable { userpipe::pump(fd, w); });
      got = bench::drain(r);
      pumper.join();
      ::close(fd);
      reap(pid);
    } else if (which == competitor::userpipe_spawn) {
      auto c =
          userpipe::spawn({"head", "-c", std::to_string(bytes), "/dev/zero"}, {.out = userpipe::stdio::pipe});
      got = bench::drain(c.out());
      if (!c.wait().success()) fail("child failed");
    } else {
#ifdef USERPIPE_BENCH_EVENT_LOOP
      asio::io_context io;
      if (which == competitor::userpipe_async_pump) {
        int fd;
        pid_t pid = start_cat(bytes, fd);
        auto [r, w] = userpipe::make_pipe();
        asio::posix::stream_descriptor from(io, fd);
        userpipe::async_writer to(io, std::move(w));
        userpipe::async_pump(from, to, [](std::error_code ec, std::uint64_t) {
          if (ec) fail("async_pump");
        });
        loop_drain d(io, std::move(r));
        io.run();
        got = d.bytes();
        reap(pid);
      } else {
        auto c = userpipe::spawn(io, {"head", "-c", std::to_string(bytes), "/dev/zero"},
                                 {.out = userpipe::stdio::pipe});
        loop_drain d(io, std::move(c.out()));
        io.run();
        got = d.bytes();
        if (!c.wait().success()) fail("child failed");
      }
#endif
    }
    getrusage(RUSAGE_SELF, &after);
    if (got != bytes) {
      state.SkipWithError("short transfer");
      break;
    }
    user += seconds(after.ru_utime) - seconds(before.ru_utime);
    sys += seconds(after.ru_stime) - seconds(before.ru_stime);
    moved += got;
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(moved));
  state.counters["user_s"] = benchmark::Counter(user, benchmark::Counter::kAvgIterations);
  state.counters["sys_s"] = benchmark::Counter(sys, benchmark::Counter::kAvgIterations);
}

/// "Produces" a chunk in place: every competitor writes its bytes once into
/// the memory they leave from, so that none gets its data for free.
void produce(std::span<std::byte> out, std::uint64_t offset) {
  std::memset(out.data(), static_cast<int>(offset >> 16) & 0xff, out.size());
}

/// Produces `bytes` into the writer: in place (prepare/commit), or into
/// `buffer` and then write().
void feed(userpipe::writer& w, std::uint64_t bytes, bool in_place, std::vector<std::byte>& buffer) {
  for (std::uint64_t done = 0; done < bytes;) {
    std::size_t const want = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), bytes - done));
    if (in_place) {
      auto span = w.prepare(std::min(want, w.capacity() / 2));
      std::size_t const n = std::min(span.size(), want);
      produce(span.first(n), done);
      w.commit(n);
      done += n;
    } else {
      produce({buffer.data(), want}, done);
      w.write({buffer.data(), want});
      done += want;
    }
  }
}

enum class stdin_competitor { kernel_pipe, userpipe_pump, userpipe_prepare, userpipe_write };

/// The other direction: this process feeds a child's stdin (`cat >/dev/null`).
///   kernel_pipe       produce into a 64 KiB buffer, write(2) it
///   userpipe_pump     produce straight into writer.prepare() spans; a thread
///                     of ours runs pump(reader, fd) on the blocking fd
///   userpipe_prepare  produce straight into writer.prepare() spans; spawn's
///                     pump thread write(2)s from the ring (one copy, as above)
///   userpipe_write    produce into a 64 KiB buffer, writer.write() it (a
///                     memcpy more than the kernel pipe)
void child_stdin(benchmark::State& state, stdin_competitor which) {
  std::uint64_t const bytes = transfer_bytes();
  double user = 0, sys = 0;
  std::uint64_t moved = 0;
  std::vector<std::byte> buffer(65536);
  for (auto _ : state) {
    rusage before{}, after{};
    getrusage(RUSAGE_SELF, &before);
    if (which == stdin_competitor::kernel_pipe) {
      int fd;
      pid_t pid = start_cat_to_null(fd);
      for (std::uint64_t done = 0; done < bytes;) {
        std::size_t const n = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), bytes - done));
        produce({buffer.data(), n}, done);
        for (std::size_t off = 0; off < n;) {
          ssize_t w = ::write(fd, buffer.data() + off, n - off);
          if (w < 0 && errno == EINTR) continue;
          if (w < 0) fail("write");
          off += static_cast<std::size_t>(w);
        }
        done += n;
      }
      ::close(fd);
      reap(pid);
    } else if (which == stdin_competitor::userpipe_pump) {
      int fd;
      pid_t pid = start_cat_to_null(fd);
      auto [r, w] = userpipe::make_pipe();
      std::thread pumper([fd, r = std::move(r)]() mutable { userpipe::pump(r, fd); });
      feed(w, bytes, true, buffer);
      w.close();
      pumper.join();
      ::close(fd);
      reap(pid);
    } else {
      auto c = userpipe::spawn({"cat"}, {.in = userpipe::stdio::pipe, .out = userpipe::stdio::null});
      feed(c.in(), bytes, which == stdin_competitor::userpipe_prepare, buffer);
      c.in().close();
      if (!c.wait().success()) fail("child failed");
    }
    getrusage(RUSAGE_SELF, &after);
    user += seconds(after.ru_utime) - seconds(before.ru_utime);
    sys += seconds(after.ru_stime) - seconds(before.ru_stime);
    moved += bytes;
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(moved));
  state.counters["user_s"] = benchmark::Counter(user, benchmark::Counter::kAvgIterations);
  state.counters["sys_s"] = benchmark::Counter(sys, benchmark::Counter::kAvgIterations);
}

}  // namespace

int main(int argc, char** argv) {
  std::string const row = "/" + std::to_string(transfer_bytes() >> 20) + "MiB";
  for (auto const& [name, entry] : {std::pair{"kernel_pipe", competitor::kernel_pipe},
                                    std::pair{"userpipe_pump", competitor::userpipe_pump},
                                    std::pair{"userpipe_spawn", competitor::userpipe_spawn},
                                    std::pair{"userpipe_async_pump", competitor::userpipe_async_pump},
                                    std::pair{"userpipe_spawn_loop", competitor::userpipe_spawn_loop}}) {
    competitor const which = entry;
#ifndef USERPIPE_BENCH_EVENT_LOOP
    if (which == competitor::userpipe_async_pump || which == competitor::userpipe_spawn_loop) continue;
#endif
    benchmark::RegisterBenchmark(("child_stdout/" + std::string(name) + row).c_str(),
                                 [which](benchmark::State& s) { child_stdout(s, which); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(1);
  }
  for (auto const& [name, entry] : {std::pair{"kernel_pipe", stdin_competitor::kernel_pipe},
                                    std::pair{"userpipe_pump", stdin_competitor::userpipe_pump},
                                    std::pair{"userpipe_prepare", stdin_competitor::userpipe_prepare},
                                    std::pair{"userpipe_write", stdin_competitor::userpipe_write}}) {
    stdin_competitor const which = entry;
    benchmark::RegisterBenchmark(("child_stdin/" + std::string(name) + row).c_str(),
                                 [which](benchmark::State& s) { child_stdin(s, which); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(1);
  }
  return bench::run(argc, argv);
}
