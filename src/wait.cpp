// The system-call half of the wait protocol described in
// include/userpipe/detail/wait.hpp. Nothing here runs on a busy pipe.
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "userpipe/detail/wait.hpp"

namespace userpipe::detail {

namespace {
// Private futexes hash by (mm, address) and skip the shared-mapping lookup.
// A shared-memory ring (two processes) must use the shared form instead.
constexpr int private_flag = FUTEX_PRIVATE_FLAG;
}  // namespace

void wait_slot::futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t value,
                           std::chrono::steady_clock::time_point deadline) noexcept {
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
  auto* address = reinterpret_cast<std::uint32_t*>(&word);
  if (deadline == std::chrono::steady_clock::time_point::max()) {
    syscall(SYS_futex, address, FUTEX_WAIT | private_flag, value, nullptr, nullptr, 0);
    return;
  }
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, which is
  // what steady_clock is on Linux: no drift from recomputing a relative
  // timeout after each spurious wake.
  auto const since_epoch = deadline.time_since_epoch();
  auto const seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(seconds.count());
  ts.tv_nsec = static_cast<long>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - seconds).count());
  syscall(SYS_futex, address, FUTEX_WAIT_BITSET | private_flag, value, &ts, nullptr,
          FUTEX_BITSET_MATCH_ANY);
}

void wait_slot::futex_wake(std::atomic<std::uint32_t>& word) noexcept {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE | private_flag, 1,
          nullptr, nullptr, 0);
}

bool wait_slot::wake() noexcept {
  std::uint32_t s = state_.load(std::memory_order_seq_cst);
  for (;;) {
    switch (s) {
      case thread:
        if (!state_.compare_exchange_weak(s, idle, std::memory_order_seq_cst, std::memory_order_seq_cst)) continue;
        futex_wake(state_);
        return true;
      case callback: {
        if (!state_.compare_exchange_weak(s, firing, std::memory_order_seq_cst, std::memory_order_seq_cst))
          continue;
        fn_(ctx_);
        // The owner waits for this before it parks or sleeps again.
        state_.store(idle, std::memory_order_release);
        return true;
      }
      default:  // idle, or another waker is already inside fn
        return false;
    }
  }
}

}  // namespace userpipe::detail
