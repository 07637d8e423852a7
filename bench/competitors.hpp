// The pipes the benchmarks race, behind one interface so that a harness is
// written once: write_all(p, n), read_some(p, n) (0 at EOF), close_write(),
// syscalls() (the system calls userpipe's waits made so far; 0 where there
// is no such count).
#pragma once

#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/lockfree/spsc_queue.hpp>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <system_error>
#include <thread>
#include <tuple>
#include <userpipe/pipe.hpp>

namespace bench {

/// Reads the ring to EOF in place; returns the byte count.
inline std::uint64_t drain(userpipe::reader& r) {
  std::uint64_t n = 0;
  for (;;) {
    auto data = r.peek();
    if (data.empty()) return n;
    benchmark::DoNotOptimize(data.data());
    n += data.size();
    r.consume(data.size());
  }
}

[[noreturn]] inline void fail(char const* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

struct userpipe_pipe {
  userpipe::reader r;
  userpipe::writer w;
  explicit userpipe_pipe(std::size_t capacity = 65536) {
    std::tie(r, w) = userpipe::make_pipe({.capacity = capacity});
  }
  void write_all(std::byte const* p, std::size_t n) { w.write({p, n}); }
  std::size_t read_some(std::byte* p, std::size_t n) { return r.read_some({p, n}); }
  void close_write() { w.close(); }
  /// Futex sleeps, futex wakes and sched_yields of both sides: every system
  /// call the data path made (no callback is parked in a benchmark, so every
  /// wake is a futex_wake).
  std::uint64_t syscalls() const { return syscalls_of(r.stats()); }
  static std::uint64_t syscalls_of(userpipe::pipe_stats const& s) {
    return s.reader_sleeps + s.writer_sleeps + s.wakes + s.reader_yields + s.writer_yields;
  }
};

/// Spins (pause) while the queue is full or empty, yielding the CPU every
/// 64 spins so that a descheduled peer can run: the blocking any user of a
/// bare lock-free queue has to add.
inline void backoff(unsigned& spins) {
  if (++spins % 64 == 0)
    std::this_thread::yield();
  else
    userpipe::detail::cpu_relax();
}

/// boost::lockfree::spsc_queue<char> of 64 KiB with bulk push and pop:
/// the lock-free ring a user would otherwise reach for. It has no blocking
/// and no end-of-stream, so both are added here (backoff, a done flag).
struct boost_spsc {
  boost::lockfree::spsc_queue<char> q{65536};
  std::atomic<bool> done{false};
  void write_all(std::byte const* p, std::size_t n) {
    auto const* c = reinterpret_cast<char const*>(p);
    unsigned spins = 0;
    while (n != 0) {
      std::size_t k = q.push(c, n);
      c += k;
      n -= k;
      if (k == 0) backoff(spins);
    }
  }
  std::size_t read_some(std::byte* p, std::size_t n) {
    unsigned spins = 0;
    for (;;) {
      if (std::size_t k = q.pop(reinterpret_cast<char*>(p), n)) return k;
      if (done.load(std::memory_order_acquire)) return q.pop(reinterpret_cast<char*>(p), n);
      backoff(spins);
    }
  }
  void close_write() { done.store(true, std::memory_order_release); }
  std::uint64_t sleeps() const { return 0; }
};

/// A kernel pipe or socketpair: the read and write descriptors.
struct fd_pipe {
  int rfd = -1, wfd = -1;
  fd_pipe(int r, int w) : rfd(r), wfd(w) {}
  fd_pipe(fd_pipe const&) = delete;
  ~fd_pipe() {
    if (rfd >= 0) ::close(rfd);
    if (wfd >= 0) ::close(wfd);
  }
  void write_all(std::byte const* p, std::size_t n) {
    while (n != 0) {
      ssize_t const k = ::write(wfd, p, n);
      if (k < 0) {
        if (errno == EINTR) continue;
        fail("write");
      }
      p += k;
      n -= static_cast<std::size_t>(k);
    }
  }
  std::size_t read_some(std::byte* p, std::size_t n) {
    for (;;) {
      ssize_t const k = ::read(rfd, p, n);
      if (k >= 0) return static_cast<std::size_t>(k);
      if (errno != EINTR) fail("read");
    }
  }
  void close_write() {
    ::close(wfd);
    wfd = -1;
  }
  std::uint64_t syscalls() const { return 0; }
};

/// pipe2(); `size` != 0 sets F_SETPIPE_SZ.
inline std::unique_ptr<fd_pipe> make_kernel_pipe(std::size_t size = 0) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) fail("pipe2");
  auto p = std::make_unique<fd_pipe>(fds[0], fds[1]);
  if (size != 0 && ::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(size)) < 0) fail("F_SETPIPE_SZ");
  return p;
}

inline std::unique_ptr<fd_pipe> make_socketpair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) fail("socketpair");
  return std::make_unique<fd_pipe>(fds[0], fds[1]);
}

}  // namespace bench
