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

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <system_error>
#include <utility>

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

/// What reader::ready_descriptor and writer::ready_descriptor hand out: a
/// ready_event that an end keeps parked while it is not ready, so that the
/// peer's progress or a close sets it. The end drives it (src/pipe.cpp):
/// refresh() when one of its try_ calls would block, withdraw() before it
/// blocks a thread or parks for somebody else.
///
/// Invariant, seen from the owning thread: armed and not fired means the
/// event is clear and the peer will set it; in every other state the event
/// is set ("maybe ready"). A set event is therefore never missed, and a
/// clear one is only ever made set by the peer's callback.
class ready_source {
 public:
  explicit ready_source(ready_event event) noexcept : event_(std::move(event)) {}

  int fd() const noexcept { return event_.fd(); }

  /// Re-arms after a call found the end not ready. `park(fn, ctx)` parks the
  /// end (true) or finds it ready (false); `unpark()` is the end's unpark.
  template <class Park, class Unpark>
  void refresh(Park park, Unpark unpark) noexcept {
    bool clear = true;
    if (armed_) {
      armed_ = false;
      // fired is only a hint: the callback sets the event before it sets
      // fired, so "not fired" may be a callback half done. unpark() tells:
      // withdrawn means it never ran and the event is still clear; taken
      // means it has run to its end (unpark waits for it).
      if (!fired_.load(std::memory_order_acquire) && unpark()) clear = false;
    }
    if (clear) event_.clear();
    fired_.store(false, std::memory_order_relaxed);
    if (park(&on_ready, static_cast<void*>(this)))
      armed_ = true;
    else
      event_.set();  // ready already: readable at once, and an edge for EPOLLET
  }

  /// Takes the park back (if any) so that the end's slot is free; the event
  /// is left set. `unpark()` is the end's unpark.
  template <class Unpark>
  void withdraw(Unpark unpark) noexcept {
    if (!armed_) return;
    armed_ = false;
    // Withdrawn: the callback will never run, so set it here. Not withdrawn:
    // the callback has run (unpark waits for it) and set it.
    if (unpark()) event_.set();
  }

 private:
  // Runs on the peer's thread. set() before fired: once the owner sees
  // fired, the set it is about to clear has happened. The object outlives
  // the call: the end's close() waits for callbacks in flight before it
  // deletes this.
  static void on_ready(void* ctx) noexcept {
    auto* self = static_cast<ready_source*>(ctx);
    self->event_.set();
    self->fired_.store(true, std::memory_order_release);
  }

  ready_event event_;
  std::atomic<bool> fired_{false};
  bool armed_ = false;  // owner only
};

}  // namespace userpipe::detail
