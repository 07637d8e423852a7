// The system-call half of the wait protocol described in
// include/userpipe/detail/wait.hpp. Nothing here runs on a busy pipe.
#include "userpipe/detail/wait.hpp"

#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "shared_wait.hpp"

namespace userpipe::detail {

namespace {
// Private futexes hash by (mm, address) and skip the shared-mapping lookup.
// A shared-memory ring (two processes) must use the shared form instead.
constexpr int private_flag = FUTEX_PRIVATE_FLAG;
}  // namespace

fence_mode process_fence_mode() noexcept {
  // A function-local static: decided once, at the first pipe, and the
  // registration (which the kernel requires before the first expedited
  // barrier) happens exactly once per process.
  static fence_mode const mode = [] {
    if (char const* off = std::getenv("USERPIPE_NO_MEMBARRIER"); off != nullptr && std::strcmp(off, "0") != 0)
      return fence_mode::symmetric;
    long const supported = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (supported < 0 || (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return fence_mode::symmetric;
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0)
      return fence_mode::symmetric;
    return fence_mode::asymmetric;
  }();
  return mode;
}

void heavy_fence() noexcept {
  // Cannot fail once registered (process_fence_mode); were it to, a full
  // barrier of our own would not order the peer's store and load, so there
  // is nothing weaker to fall back to: the registration is the guarantee.
  syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
}

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
  ts.tv_nsec =
      static_cast<long>(std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - seconds).count());
  syscall(SYS_futex, address, FUTEX_WAIT_BITSET | private_flag, value, &ts, nullptr, FUTEX_BITSET_MATCH_ANY);
}

void wait_slot::futex_wake(std::atomic<std::uint32_t>& word) noexcept {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE | private_flag, 1, nullptr, nullptr,
          0);
}

void wait_slot::pause_or_yield(int spins) noexcept {
  if (spins < 64)
    cpu_relax();
  else
    sched_yield();
}

void wait_slot::yield_cpu() noexcept { sched_yield(); }

void wait_slot::cancel() noexcept {
  if (shared_ != nullptr) {
    begin_fire();
    fire_shared();
    unwatch(*this);
  } else {
    wake();
  }
  quiesce();
}

bool wait_slot::wake() noexcept {
  if (shared_ != nullptr) {
    ring_bell_always(*this);
    return true;
  }
  // seq_cst, not acq_rel: for close() this exchange is K2, and only a
  // seq_cst one is ordered after the close flag's fetch_or against the
  // waiter's W2/W3 (with acq_rel the C++ model allows the exchange to read
  // idle while W3 misses the flag). Free on x86 and ARMv8: same instruction.
  //
  // Counted in before the exchange: an owner whose unpark() then finds the
  // slot taken also finds the count, and waits for fn to return.
  firing_.fetch_add(1, std::memory_order_seq_cst);
  bool woke = true;
  switch (state_.exchange(idle, std::memory_order_seq_cst)) {
    case thread:
      futex_wake(state_);
      break;
    case callback:
      fn_(ctx_);
      break;
    default:
      woke = false;
  }
  firing_.fetch_sub(1, std::memory_order_release);
  return woke;
}

}  // namespace userpipe::detail
