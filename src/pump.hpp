// The pump loops behind userpipe/fd.hpp, with the extra waiting the process
// pumps need. Private to the library.
#pragma once

#include <cstdint>
#include <system_error>

#include "ready_event.hpp"
#include "userpipe/pipe.hpp"

namespace userpipe::detail {

/// How a pump sleeps when the ring is not ready. ring_ready null: in the
/// end's own blocking wait (prepare/peek), as the public pumps do. Otherwise
/// the end is armed on ring_ready and the pump sleeps in poll(2) on it and
/// on cancel_fd, so that
/// another thread can stop it by making cancel_fd readable; a pump into an
/// fd also wakes when the fd reports an error (its reader is gone).
/// A cancelled pump ends with operation_canceled: pump_into closes its
/// writer with that error, pump_out_of closes its reader (broken_pipe for
/// the userpipe writer).
/// eio_is_eof: fd is a pty master, whose read(2) fails with EIO once the
/// slave is hung up (after the last byte): that is its end-of-file.
struct pump_control {
  ready_event const* ring_ready = nullptr;
  int cancel_fd = -1;
  bool eio_is_eof = false;
};

std::uint64_t pump_into(int fd, writer& to, pump_control const& control, std::error_code& ec) noexcept;
std::uint64_t pump_out_of(reader& from, int fd, pump_control const& control, std::error_code& ec) noexcept;

}  // namespace userpipe::detail
