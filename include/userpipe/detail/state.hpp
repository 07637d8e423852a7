// userpipe/detail/state.hpp — the control block both ends of one pipe share:
// the ring, one wait slot per side, the close flags and the counters.
#pragma once

#include <atomic>
#include <cstdint>
#include <system_error>

#include "userpipe/detail/memory.hpp"
#include "userpipe/detail/ring.hpp"
#include "userpipe/detail/wait.hpp"

namespace userpipe::detail {

/// Counters of one side, written only by that side (so plain load+store,
/// no read-modify-write) and only on the slow path.
struct side_counters {
  alignas(64) std::atomic<std::uint64_t> waits{0};   // calls that found no room / no data
  std::atomic<std::uint64_t> sleeps{0};              // of which slept on the futex
  std::atomic<std::uint64_t> wakes{0};               // wake-ups this side issued

  static void bump(std::atomic<std::uint64_t>& c, std::uint64_t by = 1) noexcept {
    c.store(c.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
  }
};

struct pipe_state {
  static constexpr std::uint32_t writer_closed = 1;
  static constexpr std::uint32_t reader_closed = 2;

  explicit pipe_state(memory mem) noexcept : bytes(std::move(mem)) {}

  detail::ring bytes;
  wait_slot reader_wait;  // the reader sleeps here, the writer wakes it
  wait_slot writer_wait;  // the writer sleeps here, the reader wakes it

  alignas(64) std::atomic<std::uint32_t> closed{0};
  // Written once by the closing end before its bit is set (release), read
  // by the peer only after it has seen the bit (acquire).
  std::error_code writer_reason;
  std::error_code reader_reason;
  std::atomic<int> references{2};

  side_counters writer_counters;
  side_counters reader_counters;
};

inline void release(pipe_state* state) noexcept {
  if (state != nullptr && state->references.fetch_sub(1, std::memory_order_acq_rel) == 1)
    delete state;
}

}  // namespace userpipe::detail
