// userpipe/detail/error.hpp — how every userpipe call turns an error_code
// into an exception, and a timeout into a deadline. Shared by the inline
// bodies of the public headers and by src/.
#pragma once

#include <chrono>
#include <system_error>

namespace userpipe::detail {

/// Throws std::system_error(ec, what). Out of line, so that the throwing
/// wrappers of the inline fast paths stay small.
[[noreturn]] void throw_error(std::error_code ec, char const* what);

inline void throw_if(std::error_code ec, char const* what) {
  if (ec) [[unlikely]]
    throw_error(ec, what);
}

/// now + timeout on the steady clock, saturating: a timeout too large to
/// represent waits forever (time_point::max()), a non-positive one is now.
inline std::chrono::steady_clock::time_point deadline_after(auto timeout) noexcept {
  using clock = std::chrono::steady_clock;
  auto const now = clock::now();
  if (timeout <= decltype(timeout)::zero()) return now;
  // Compared in floating point: hours::max() in nanoseconds would overflow.
  using seconds = std::chrono::duration<double>;
  if (seconds(timeout) >= seconds(clock::time_point::max() - now)) return clock::time_point::max();
  return now + std::chrono::ceil<clock::duration>(timeout);
}

}  // namespace userpipe::detail
