// The system-call half of the shared wait slots (see "Across processes" in
// include/userpipe/detail/wait.hpp): sleeping in poll() on an end's socket,
// the one-byte doorbell, and the watcher thread that turns a bell or a
// hang-up into a parked callback. Nothing here runs on a busy pipe.
#include "shared_wait.hpp"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace userpipe::detail {

void send_bell(int fd) noexcept {
  char const bell = 0;
  while (::send(fd, &bell, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
}

bool drain_bells(int fd) noexcept {
  char buffer[64];
  for (;;) {
    ssize_t const n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n > 0) continue;
    if (n == 0) return true;  // SOCK_SEQPACKET: 0 is the peer's close, never an empty bell
    if (errno == EINTR) continue;
    // EAGAIN: drained. Anything else (EBADF after fork, ECONNRESET) leaves
    // nothing to wait for: count it as hung up.
    return errno != EAGAIN && errno != EWOULDBLOCK;
  }
}

bool wait_slot::ring_bell(std::uint32_t state) noexcept {
  // Once per sleep: the owner publishes a new generation in the state each
  // time it sleeps or parks. Waker-private, so a lying peer costs at most a
  // bell too many or too few (the latter bounded by the hang-up).
  if (state == shared_->last_rung) return false;
  shared_->last_rung = state;
  send_bell(shared_->bell_fd);
  return true;
}

void wait_slot::sleep_on_socket(std::chrono::steady_clock::time_point deadline) noexcept {
  pollfd p{shared_->sleep_fd, POLLIN | POLLRDHUP, 0};
  int timeout = -1;
  if (deadline != std::chrono::steady_clock::time_point::max()) {
    auto const left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return;
    // Rounded up: waking a little late is fine, spinning on a zero timeout is not.
    timeout = static_cast<int>(std::min<std::int64_t>(
        std::chrono::ceil<std::chrono::milliseconds>(left).count(), 1 << 30));
  }
  int const n = ::poll(&p, 1, timeout);
  if (n <= 0) return;  // timeout or EINTR: the caller's loop re-checks
  bool hung_up = (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)) != 0;
  if (p.revents & POLLIN) hung_up |= drain_bells(shared_->sleep_fd);
  if (hung_up) shared_->gone->fetch_or(shared_->gone_bit, std::memory_order_seq_cst);
}

bool wait_slot::unpark_shared() noexcept {
  bool const withdrawn = shared_->parked.exchange(0, std::memory_order_seq_cst) != 0;
  state_.store(idle, std::memory_order_seq_cst);
  quiesce();
  return withdrawn;
}

void wait_slot::fire_shared() noexcept {
  if (shared_->parked.exchange(0, std::memory_order_seq_cst) != 0) {
    state_.store(idle, std::memory_order_seq_cst);
    fn_(ctx_);
  }
  firing_.fetch_sub(1, std::memory_order_release);
}

// ---- the watcher ------------------------------------------------------------
//
// One thread per process, started by the first park on a shared end. It
// epolls the sockets of shared ends that have a callback parked (one-shot:
// each park re-arms its socket, so a socket with nothing parked costs
// nothing) and turns a bell or a hang-up into the callback, on its own
// thread, as a waker in this process would. The registry maps epoll's ids
// to slots under a mutex, so that a slot unregistered by close is never
// touched again.

namespace {

struct watcher {
  std::mutex mutex;
  int epoll_fd = -1;
  std::uint64_t next_id = 1;
  std::unordered_map<std::uint64_t, wait_slot*> slots;

  void run() noexcept {
    epoll_event events[16];
    for (;;) {
      int fd;
      {
        std::lock_guard lock(mutex);
        fd = epoll_fd;
      }
      int const n = ::epoll_wait(fd, events, 16, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;
      }
      for (int i = 0; i < n; ++i) {
        wait_slot* slot = nullptr;
        {
          std::lock_guard lock(mutex);
          auto it = slots.find(events[i].data.u64);
          if (it == slots.end()) continue;
          slot = it->second;
          auto* shared = slot->shared();
          bool hung_up = (events[i].events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)) != 0;
          if (events[i].events & EPOLLIN) hung_up |= drain_bells(shared->sleep_fd);
          if (hung_up) shared->gone->fetch_or(shared->gone_bit, std::memory_order_seq_cst);
          slot->begin_fire();
        }
        slot->fire_shared();
      }
    }
  }
};

watcher& the_watcher() {
  static watcher* w = new watcher;  // never destroyed: its thread outlives main
  return *w;
}

}  // namespace

bool wait_slot::watch() noexcept {
  watcher& w = the_watcher();
  std::lock_guard lock(w.mutex);
  if (w.epoll_fd < 0) {
    w.epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (w.epoll_fd < 0) return false;
    try {
      std::thread([&w] { w.run(); }).detach();
    } catch (...) {
      ::close(w.epoll_fd);
      w.epoll_fd = -1;
      return false;
    }
  }
  epoll_event event{};
  event.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
  if (shared_->watch_id != 0) {
    event.data.u64 = shared_->watch_id;
    return ::epoll_ctl(w.epoll_fd, EPOLL_CTL_MOD, shared_->sleep_fd, &event) == 0;
  }
  std::uint64_t const id = w.next_id++;
  event.data.u64 = id;
  try {
    w.slots.emplace(id, this);
  } catch (...) {
    return false;
  }
  if (::epoll_ctl(w.epoll_fd, EPOLL_CTL_ADD, shared_->sleep_fd, &event) != 0) {
    w.slots.erase(id);
    return false;
  }
  shared_->watch_id = id;
  return true;
}

void unwatch(wait_slot& slot) noexcept {
  auto* shared = slot.shared();
  if (shared->watch_id == 0) return;
  watcher& w = the_watcher();
  std::lock_guard lock(w.mutex);
  w.slots.erase(shared->watch_id);
  ::epoll_ctl(w.epoll_fd, EPOLL_CTL_DEL, shared->sleep_fd, nullptr);
  shared->watch_id = 0;
}

void lock_watcher() noexcept { the_watcher().mutex.lock(); }
void unlock_watcher() noexcept { the_watcher().mutex.unlock(); }

void forget_watcher_in_child() noexcept {
  // Only the forking thread exists in the child; the registry's mutex was
  // taken by the prepare handler (shared.cpp) and is released there.
  watcher& w = the_watcher();
  if (w.epoll_fd >= 0) ::close(w.epoll_fd);
  w.epoll_fd = -1;
  w.slots.clear();
}

}  // namespace userpipe::detail
