// The bridge from a pipe end's park to the kernel's readiness: a descriptor
// that poll(2), epoll or an event loop can wait on, readable while a parked
// end is ready. The wait protocol (userpipe/detail/wait.hpp) wakes a parked
// end by calling its callback on the peer's thread; the callback here makes
// an eventfd readable, which never blocks and costs one write(2) only when
// the end was really parked. Private to the library.
#pragma once

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <system_error>

#include "posix.hpp"

namespace userpipe::detail {

/// A non-blocking eventfd used as a flag: set() makes fd() readable, clear()
/// unreadable again. arm() parks a reader or writer so that the peer's
/// progress (or a close) sets it; disarm() withdraws that park.
///
/// Threads: set() from any thread (it is what the peer's wake runs); the rest
/// from the thread that owns the end. One arm at a time.
class ready_event {
 public:
  /// An empty event (fd() is -1); make() creates one.
  ready_event() noexcept = default;

  /// A new event, not set. Fails with the errno of eventfd(2).
  static ready_event make(std::error_code& ec) noexcept {
    ready_event e;
    e.fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!e.fd_) ec = posix::errno_code();
    return e;
  }

  int fd() const noexcept { return fd_.get(); }
  explicit operator bool() const noexcept { return fd_.valid(); }

  /// Makes fd() readable. Never blocks.
  void set() const noexcept { signal(fd()); }

  /// Makes fd() unreadable. Never blocks.
  void clear() const noexcept {
    std::uint64_t value;
    posix::retry([&] { return ::read(fd(), &value, sizeof value); });
  }

  /// Parks `end` (a reader or writer) so that the event is set once `want`
  /// bytes (a reader) or bytes of room (a writer) are there, or either side
  /// closes. False: the end is ready already; nothing is parked and the
  /// event is not set.
  template <class End>
  bool arm(End& end, std::size_t want) const noexcept {
    // The descriptor itself is the context: nothing the callback reads can
    // move or die while it runs on the peer's thread.
    return end.park(want, &on_ready, reinterpret_cast<void*>(static_cast<std::intptr_t>(fd())));
  }

  /// Withdraws the park of a successful arm(), whether or not it has fired
  /// by now. On return no callback of that park will set the event again,
  /// and the event is clear. Blocks only while a peer is inside the
  /// callback. (Once fd() has been seen readable, clear() alone will do.)
  template <class End>
  void disarm(End& end) const noexcept {
    if (end.unpark()) return;
    // The callback has run or is running: wait for its set() so that it
    // cannot land in the next arm.
    pollfd ready = {fd(), POLLIN, 0};
    posix::retry([&] { return ::poll(&ready, 1, -1); });
    clear();
  }

 private:
  static void signal(int fd) noexcept {
    std::uint64_t const one = 1;
    posix::retry([&] { return ::write(fd, &one, sizeof one); });
  }
  static void on_ready(void* ctx) noexcept { signal(static_cast<int>(reinterpret_cast<std::intptr_t>(ctx))); }

  posix::unique_fd fd_;
};

}  // namespace userpipe::detail
