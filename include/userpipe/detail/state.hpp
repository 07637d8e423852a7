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
  alignas(cache_line) std::atomic<std::uint64_t> waits{0};   // calls that found no room / no data
  std::atomic<std::uint64_t> sleeps{0};              // of which slept on the futex
  std::atomic<std::uint64_t> wakes{0};               // wake-ups this side issued

  static void bump(std::atomic<std::uint64_t>& c, std::uint64_t by = 1) noexcept {
    c.store(c.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
  }
};

struct pipe_state {
  static constexpr std::uint32_t writer_closed = 1;
  static constexpr std::uint32_t reader_closed = 2;

  /// In-process pipes take the process's fence mode (fence.hpp); a ring
  /// whose sides are in different processes must pass symmetric.
  explicit pipe_state(memory mem, fence_mode mode = process_fence_mode()) noexcept
      : bytes(std::move(mem), mode), reader_wait(mode), writer_wait(mode) {}

  detail::ring bytes;
  wait_slot reader_wait;  // the reader sleeps here, the writer wakes it
  wait_slot writer_wait;  // the writer sleeps here, the reader wakes it

  alignas(cache_line) std::atomic<std::uint32_t> closed{0};
  // Written once by the closing end before its bit is set (release), read
  // by the peer only after it has seen the bit (acquire).
  std::error_code writer_reason;
  std::error_code reader_reason;
  std::atomic<int> references{2};

  side_counters writer_counters;
  side_counters reader_counters;

  // The waiter's re-check (W3 in wait.hpp): may the side that waits for the
  // other's index to reach `target` go on? Yes once it has, or once the
  // other side has closed. seq_cst loads, as the Dekker argument requires.
  bool writer_may_go(std::uint64_t tail_target) const noexcept {
    return bytes.tail_index().load(std::memory_order_seq_cst) >= tail_target ||
           (closed.load(std::memory_order_seq_cst) & reader_closed) != 0;
  }
  bool reader_may_go(std::uint64_t head_target) const noexcept {
    return bytes.head_index().load(std::memory_order_seq_cst) >= head_target ||
           (closed.load(std::memory_order_seq_cst) & writer_closed) != 0;
  }
};

inline void release(pipe_state* state) noexcept {
  if (state != nullptr && state->references.fetch_sub(1, std::memory_order_acq_rel) == 1)
    delete state;
}

}  // namespace userpipe::detail
