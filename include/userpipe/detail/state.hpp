// userpipe/detail/state.hpp — the control block both ends of one pipe share:
// the ring, one wait slot per side, the close flags and the counters.
//
// The words both ends write (indices, wait states, close flags) are
// pipe_words: inside the control block for a pipe in one process, in the
// memfd for a shared pipe, whose control block is then per process (each
// process that holds an end has its own) and has a shared_link
// (src/shared.cpp) for the memfd, the mapping and the ends' sockets.
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
  alignas(cache_line) std::atomic<std::uint64_t> waits{0};  // calls that found no room / no data
  std::atomic<std::uint64_t> sleeps{0};                     // of which slept on the futex
  std::atomic<std::uint64_t> yields{0};                     // sched_yield calls while waiting
  std::atomic<std::uint64_t> wakes{0};                      // wake-ups this side issued

  static void bump(std::atomic<std::uint64_t>& c, std::uint64_t by = 1) noexcept {
    c.store(c.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
  }
};

/// The words both ends write.
struct pipe_words {
  ring_indices indices;
  wait_words reader_wait;
  wait_words writer_wait;
  alignas(cache_line) std::atomic<std::uint32_t> closed{0};
  // A shared pipe's close reasons, as errno values (generic category).
  std::atomic<std::int32_t> writer_reason{0};
  std::atomic<std::int32_t> reader_reason{0};
};

struct shared_link;
struct pipe_state;
// src/shared.cpp
void destroy(shared_link* link) noexcept;
pipe_state* make_shared_state(std::size_t capacity, bool mirrored);
/// Closes this process's socket of the end `end_bit` (its close): the peer
/// sees the hang-up even if it missed the flag.
void close_socket(pipe_state& state, std::uint32_t end_bit) noexcept;
/// A close reason as the errno value a shared pipe can carry: its value
/// if it is generic (errc), EIO for another category, 0 for none.
inline std::int32_t errno_value(std::error_code reason) noexcept {
  if (!reason) return 0;
  if (reason.category() == std::generic_category() || reason.category() == std::system_category())
    return reason.value();
  return 5;  // EIO
}

struct pipe_state {
  static constexpr std::uint32_t writer_closed = 1;
  static constexpr std::uint32_t reader_closed = 2;
  // Private bits of `gone` besides the two above.
  static constexpr std::uint32_t corrupt = 4;  // see ring::fault_bits
  static constexpr std::uint32_t forked = 8;   // this is a fork()ed child's copy

  /// A pipe in one process (shared == nullptr), or this process's view of
  /// a shared one whose words are in the mapping. In-process pipes take the
  /// process's fence mode (fence.hpp); a ring whose sides are in different
  /// processes must pass symmetric: membarrier(PRIVATE_EXPEDITED) does not
  /// reach another process.
  explicit pipe_state(memory mem, pipe_words* shared = nullptr,
                      fence_mode mode = process_fence_mode()) noexcept
      : words(shared != nullptr ? *shared : own_words),
        bytes(std::move(mem), words.indices, gone, mode),
        reader_wait(words.reader_wait, mode),
        writer_wait(words.writer_wait, mode),
        closed(words.closed) {}
  ~pipe_state() {
    if (link != nullptr) destroy(link);
  }

  pipe_words own_words;
  pipe_words& words;
  // This process's private verdict, never taken from shared memory: a peer
  // that hung up (its closed bit), a corrupt ring, a fork()ed copy.
  alignas(cache_line) std::atomic<std::uint32_t> gone{0};

  detail::ring bytes;
  wait_slot reader_wait;  // the reader sleeps here, the writer wakes it
  wait_slot writer_wait;  // the writer sleeps here, the reader wakes it

  std::atomic<std::uint32_t>& closed;
  // Written once by the closing end before its bit is set (release), read
  // by the peer only after it has seen the bit (acquire).
  std::error_code writer_reason;
  std::error_code reader_reason;
  std::atomic<int> references{2};
  shared_link* link = nullptr;  // a shared pipe's memfd, mapping, sockets

  side_counters writer_counters;
  side_counters reader_counters;

  /// Which ends count as closed: the flags (shared for a shared pipe) or
  /// this process's own verdict.
  std::uint32_t closed_bits() const noexcept {
    return closed.load(std::memory_order_acquire) | gone.load(std::memory_order_acquire);
  }

  /// Why the writer's end counts as closed: empty for a plain EOF.
  std::error_code writer_close_reason() const noexcept {
    if (std::error_code ec = fault()) return ec;
    if (link == nullptr) return writer_reason;
    if ((closed.load(std::memory_order_acquire) & writer_closed) == 0) return {};  // died: EOF
    return errno_reason(words.writer_reason.load(std::memory_order_acquire));
  }
  /// Why the reader's end counts as closed: broken_pipe unless it said.
  std::error_code reader_close_reason() const noexcept {
    if (std::error_code ec = fault()) return ec;
    std::error_code reason = reader_reason;
    if (link != nullptr)
      reason = (closed.load(std::memory_order_acquire) & reader_closed) != 0
                   ? errno_reason(words.reader_reason.load(std::memory_order_acquire))
                   : std::error_code{};
    return reason ? reason : std::make_error_code(std::errc::broken_pipe);
  }

  // The waiter's re-check (W3 in wait.hpp): may the side that waits for the
  // other's index to reach `target` go on? Yes once it has, or once the
  // other side has closed. seq_cst loads, as the Dekker argument requires.
  bool writer_may_go(std::uint64_t tail_target) const noexcept {
    return bytes.tail_index().load(std::memory_order_seq_cst) >= tail_target ||
           (closed_bits_seq_cst() & reader_closed) != 0;
  }
  bool reader_may_go(std::uint64_t head_target) const noexcept {
    return bytes.head_index().load(std::memory_order_seq_cst) >= head_target ||
           (closed_bits_seq_cst() & writer_closed) != 0;
  }
  std::uint32_t closed_bits_seq_cst() const noexcept {
    return closed.load(std::memory_order_seq_cst) | gone.load(std::memory_order_seq_cst);
  }

 private:
  std::error_code fault() const noexcept {
    std::uint32_t const g = gone.load(std::memory_order_acquire);
    if (g & forked) return std::make_error_code(std::errc::bad_file_descriptor);
    if (g & corrupt) return std::make_error_code(std::errc::protocol_error);
    return {};
  }
  /// The peer wrote it: anything that is not an errno value is a lie.
  static std::error_code errno_reason(std::int32_t value) noexcept {
    if (value == 0) return {};
    if (value < 0 || value > 4095) return std::make_error_code(std::errc::protocol_error);
    return {value, std::generic_category()};
  }
};

/// For try_ calls on a shared pipe that found nothing to do: has the peer
/// (the end whose closed bit is `peer_bit`) hung up? Asks its socket without
/// blocking and records a hang-up in `gone`. Always false for a pipe in one
/// process.
bool peer_hung_up_slow(pipe_state& state, std::uint32_t peer_bit) noexcept;  // src/shared.cpp
inline bool peer_hung_up(pipe_state& state, std::uint32_t peer_bit) noexcept {
  return state.link != nullptr && peer_hung_up_slow(state, peer_bit);
}

/// An end lets go of the state; the last one deletes it.
inline void drop_reference(pipe_state* state) noexcept {
  if (state != nullptr && state->references.fetch_sub(1, std::memory_order_acq_rel) == 1) delete state;
}

}  // namespace userpipe::detail
