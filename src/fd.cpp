// Pumps between a file descriptor and a userpipe end: read(2) into the span
// prepare() gives, write(2) from the span peek() gives. See userpipe/fd.hpp.
#include "userpipe/fd.hpp"

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

#include "posix.hpp"
#include "pump.hpp"

namespace userpipe {

namespace {

using detail::pump_control;
using detail::posix::errno_code;
using detail::posix::retry;

/// A read waits for this much room (or the whole ring if smaller) before it
/// calls read(2): one system call per page at least, never per byte, when
/// the reader frees the ring a little at a time.
constexpr std::size_t min_read = 4096;

bool poll_all(pollfd* fds, nfds_t n, std::error_code& ec) noexcept {
  if (retry([&] { return ::poll(fds, n, -1); }) >= 0) return true;
  ec = errno_code();
  return false;
}

enum class woke { ring, fd, cancel };

/// Arms `end` for `want` bytes and sleeps until the ring is ready, cancel_fd
/// is readable, or an event on `fd` (events 0: errors only; fd < 0: not
/// watched).
template <class End>
woke wait_for_ring(End& end, std::size_t want, pump_control const& c, int fd, std::error_code& ec) noexcept {
  if (!c.ring_ready->arm(end, want)) return woke::ring;
  pollfd fds[3] = {{c.ring_ready->fd(), POLLIN, 0}, {c.cancel_fd, POLLIN, 0}, {fd, 0, 0}};
  bool const ok = poll_all(fds, fd >= 0 ? 3 : 2, ec);
  if (ok && fds[0].revents != 0) {
    c.ring_ready->clear();  // it fired: nothing left to withdraw
    return woke::ring;
  }
  c.ring_ready->disarm(end);
  if (!ok || fds[1].revents != 0) return woke::cancel;
  return fds[2].revents != 0 ? woke::fd : woke::ring;
}

/// Sleeps until `fd` is ready for `events` or cancel_fd is readable.
woke wait_for_fd(int fd, short events, pump_control const& c, std::error_code& ec) noexcept {
  pollfd fds[2] = {{fd, events, 0}, {c.cancel_fd, POLLIN, 0}};
  if (!poll_all(fds, c.cancel_fd >= 0 ? 2 : 1, ec)) return woke::cancel;
  // Cancel first: a hung-up pty master can report POLLHUP/POLLOUT while its
  // write still says EAGAIN (the slave's other holder reads nothing), and
  // the pump would spin on that without ever seeing the cancel.
  return fds[1].revents != 0 ? woke::cancel : woke::fd;
}

/// Blocks SIGPIPE on this thread while a pump writes to an fd, and swallows
/// the SIGPIPE a failed write raised, so that EPIPE is an error code and not
/// the end of the process. A SIGPIPE that was already pending is left alone.
class sigpipe_guard {
 public:
  sigpipe_guard() noexcept {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  void swallow() noexcept {
    if (was_pending_) return;
    timespec const zero{};
    retry([&] { return sigtimedwait(&pipe_, nullptr, &zero); });
  }
  ~sigpipe_guard() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  sigpipe_guard(sigpipe_guard const&) = delete;
  sigpipe_guard& operator=(sigpipe_guard const&) = delete;

 private:
  sigset_t pipe_, old_;
  bool was_pending_ = false;
};

}  // namespace

namespace detail {

ssize_t write_without_sigpipe(int fd, std::span<std::byte const> data) noexcept {
  sigpipe_guard guard;
  ssize_t const n = retry([&] { return ::write(fd, data.data(), data.size()); });
  if (n < 0 && errno == EPIPE) {
    guard.swallow();
    errno = EPIPE;
  }
  return n;
}

std::uint64_t pump_into(int fd, writer& to, pump_control const& c, std::error_code& ec) noexcept {
  ec.clear();
  std::size_t const want = std::clamp<std::size_t>(to.capacity(), 1, min_read);
  std::uint64_t total = 0;
  for (;;) {
    std::span<std::byte> room = to.try_prepare(ec);
    if (ec) return total;  // the reader is gone: the fd's owner decides
    if (room.size() < want) {
      if (c.ring_ready == nullptr) {
        room = to.prepare(want, ec);
      } else {
        woke const w = wait_for_ring(to, want, c, -1, ec);
        if (w == woke::cancel) {
          if (!ec) ec = std::make_error_code(std::errc::operation_canceled);
          to.close(ec);
          return total;
        }
        room = to.try_prepare(ec);
      }
      if (ec) return total;
      if (room.empty()) continue;
    }
    ssize_t const n = retry([&] { return ::read(fd, room.data(), room.size()); });
    if (n > 0) {
      to.commit(static_cast<std::size_t>(n), ec);
      total += static_cast<std::uint64_t>(n);
      continue;
    }
    if (n == 0) {
      to.close();
      return total;
    }
    int const e = errno;
    if (e == EIO && c.eio_is_eof) {
      to.close();
      return total;
    }
    if (e == EAGAIN || e == EWOULDBLOCK) {
      if (wait_for_fd(fd, POLLIN, c, ec) == woke::fd) continue;
      if (!ec) ec = std::make_error_code(std::errc::operation_canceled);
    } else {
      ec = errno_code(e);
    }
    to.close(ec);
    return total;
  }
}

std::uint64_t pump_out_of(reader& from, int fd, pump_control const& c, std::error_code& ec) noexcept {
  ec.clear();
  std::uint64_t total = 0;
  for (;;) {
    std::span<std::byte const> data = from.try_peek(ec);
    if (ec == std::errc::resource_unavailable_try_again) {
      if (c.ring_ready == nullptr) {
        data = from.peek(ec);
      } else {
        ec.clear();
        switch (wait_for_ring(from, 1, c, fd, ec)) {
          case woke::ring:
            continue;
          case woke::fd:  // the fd reports an error: its reader is gone
            ec = std::make_error_code(std::errc::broken_pipe);
            from.close(ec);
            return total;
          case woke::cancel:
            from.close();
            if (!ec) ec = std::make_error_code(std::errc::operation_canceled);
            return total;
        }
      }
    }
    if (ec || data.empty()) return total;  // the writer's close error, or EOF
    ssize_t const n = retry([&] { return ::write(fd, data.data(), data.size()); });
    if (n >= 0) {
      from.consume(static_cast<std::size_t>(n), ec);
      total += static_cast<std::uint64_t>(n);
      continue;
    }
    int const e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK) {
      if (wait_for_fd(fd, POLLOUT, c, ec) == woke::fd) continue;
      from.close();
      if (!ec) ec = std::make_error_code(std::errc::operation_canceled);
      return total;
    }
    // Nobody reads the fd: a pipe says EPIPE, a hung-up pty master EIO.
    ec = e == EPIPE || (e == EIO && c.eio_is_eof) ? std::make_error_code(std::errc::broken_pipe)
                                                  : errno_code(e);
    from.close(ec);
    return total;
  }
}

}  // namespace detail

std::uint64_t pump(int fd, writer& to, std::error_code& ec) noexcept {
  return detail::pump_into(fd, to, {}, ec);
}

std::uint64_t pump(int fd, writer& to) {
  std::error_code ec;
  std::uint64_t const n = pump(fd, to, ec);
  detail::throw_if(ec, "userpipe::pump(fd, writer)");
  return n;
}

std::uint64_t pump(reader& from, int fd, std::error_code& ec) noexcept {
  sigpipe_guard guard;
  std::uint64_t const n = detail::pump_out_of(from, fd, {}, ec);
  if (ec == std::errc::broken_pipe) guard.swallow();
  return n;
}

std::uint64_t pump(reader& from, int fd) {
  std::error_code ec;
  std::uint64_t const n = pump(from, fd, ec);
  detail::throw_if(ec, "userpipe::pump(reader, fd)");
  return n;
}

}  // namespace userpipe
