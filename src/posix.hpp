// The few things every POSIX call in the library needs: a descriptor that
// closes itself, errno as an std::error_code, and the retry of a call a
// signal interrupted. Private to the library.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <utility>

namespace userpipe::detail::posix {

/// errno (or any errno value) as the error_code the public API reports.
inline std::error_code errno_code(int e = errno) noexcept { return {e, std::generic_category()}; }

/// Calls `call` again while it fails with EINTR, and returns its last
/// result. For calls that report failure as -1 with errno (read, write,
/// poll, waitpid, sigtimedwait, ...); errno is the call's on return.
template <class Call>
auto retry(Call call) noexcept(noexcept(call())) {
  for (;;) {
    auto const r = call();
    if (!(r == -1 && errno == EINTR)) return r;
  }
}

/// Owns one descriptor: closes it on destruction unless released. Move-only.
class unique_fd {
 public:
  unique_fd() noexcept = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  ~unique_fd() { reset(); }

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }

  /// Gives up ownership without closing, as unique_ptr::release.
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
  /// Closes the descriptor held (if any) and holds `fd` instead. close(2) is
  /// not retried on EINTR: on Linux the descriptor is gone either way.
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace userpipe::detail::posix
