// The process-wide half of the shared wait slots (src/shared_wait.cpp):
// the doorbell and the watcher thread that runs parked callbacks.
#pragma once

#include "userpipe/detail/wait.hpp"

namespace userpipe::detail {

/// Sends one byte on `fd` without blocking or raising SIGPIPE. A full
/// socket means a bell is already pending; a closed peer has nobody to
/// wake: both are ignored.
void send_bell(int fd) noexcept;
inline void ring_bell_always(wait_slot& slot) noexcept { send_bell(slot.shared()->bell_fd); }

/// Reads every pending bell from `fd`; true if the peer has hung up.
bool drain_bells(int fd) noexcept;

/// Stops watching the slot's socket. After it returns the watcher thread
/// no longer finds the slot (a callback it already began is waited out by
/// the caller's quiesce).
void unwatch(wait_slot& slot) noexcept;

/// For fork(): the registry lock is held across fork so the child's copy
/// is consistent; the child has no watcher thread and forgets the parent's.
void lock_watcher() noexcept;
void unlock_watcher() noexcept;
void forget_watcher_in_child() noexcept;

}  // namespace userpipe::detail
