// userpipe/detail/fence.hpp — who pays for the store-load barrier of the
// wait protocol (wait.hpp): both sides on every publish (symmetric), or
// only a side about to sleep (asymmetric).
//
// A Dekker pair needs a full barrier between each side's store and its
// later load of the other side's variable. The publishing side runs once
// per write; the sleeping side runs once per sleep, which costs a system
// call anyway. Asymmetric: the publisher keeps a compiler barrier only
// (light), and the sleeper calls membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
// (heavy), which makes every other running thread of the process execute a
// full barrier before it returns: the light side's store is then visible,
// or the light side's later load comes after the sleeper's store. This is
// the pattern of folly's asymmetric_thread_fence_light/heavy.
//
// PRIVATE_EXPEDITED reaches the threads of this process only: a ring whose
// two sides live in different processes (shared memory) stays symmetric.
#pragma once

#include <atomic>
#include <cstdint>

namespace userpipe::detail {

enum class fence_mode : std::uint8_t {
  symmetric,   // seq_cst publish; the sleeper needs no heavy barrier
  asymmetric,  // release publish + compiler barrier; the sleeper calls heavy_fence()
};

/// asymmetric if this process registered the expedited private membarrier,
/// else symmetric. Decided once, at the first call; thread-safe.
/// USERPIPE_NO_MEMBARRIER=1 in the environment forces symmetric (the tests
/// run every protocol test in both modes).
fence_mode process_fence_mode() noexcept;

/// The publisher's half in asymmetric mode: no instruction, only an order
/// the compiler must keep (store, then the load of the peer's state).
inline void light_fence() noexcept { std::atomic_signal_fence(std::memory_order_seq_cst); }

/// The sleeper's half in asymmetric mode: membarrier(PRIVATE_EXPEDITED).
/// Only called when process_fence_mode() is asymmetric.
void heavy_fence() noexcept;

}  // namespace userpipe::detail
