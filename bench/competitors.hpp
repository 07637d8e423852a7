// The pipes the benchmarks race, behind one interface so that a harness is
// written once: write_all(p, n), read_some(p, n) (0 at EOF), close_write(),
// syscalls() (the system calls userpipe's waits made so far; 0 where there
// is no such count).
#pragma once

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <system_error>
#include <tuple>
#include <userpipe/pipe.hpp>

namespace bench {

[[noreturn]] inline void fail(char const* what) { throw std::system_error(errno, std::generic_category(), what); }

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
