// Mirrored ring memory: one memfd mapped twice, back to back, so that the
// byte after the ring's last is its first again and no span ever wraps.
#include "userpipe/detail/memory.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <system_error>

#include "posix.hpp"

namespace userpipe::detail {

namespace {

[[noreturn]] void throw_errno(int err, char const* what) {
  throw std::system_error(posix::errno_code(err), what);
}

}  // namespace

std::size_t memory::mirrored_size(std::size_t capacity) noexcept {
  // Page sizes are powers of two, so the larger of the two is a power of
  // two and a whole number of pages.
  auto const page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return std::max(std::bit_ceil(capacity), page);
}

memory memory::mirrored(std::size_t capacity) {
  std::size_t const size = mirrored_size(capacity);
  // Closed on every path: once both mappings exist, the pages live as long
  // as the mappings, not the descriptor.
  posix::unique_fd const file(::memfd_create("userpipe", MFD_CLOEXEC));
  if (!file) throw_errno(errno, "userpipe: memfd_create");
  if (::ftruncate(file.get(), static_cast<off_t>(size)) != 0) throw_errno(errno, "userpipe: ftruncate");

  // Reserve both halves first so nothing else can be mapped into the gap
  // between the two mappings; MAP_FIXED then replaces the reservation.
  void* const base = ::mmap(nullptr, 2 * size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) throw_errno(errno, "userpipe: mmap (reserve)");
  auto* const bytes = static_cast<std::byte*>(base);
  for (std::byte* half : {bytes, bytes + size}) {
    if (::mmap(half, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, file.get(), 0) == MAP_FAILED) {
      int const err = errno;
      ::munmap(base, 2 * size);
      throw_errno(err, "userpipe: mmap (mirror)");
    }
  }
  // Shared mappings would stay shared with a forked child, which could then
  // scribble on the parent's ring; heap memory would be copied instead. Keep
  // the child out altogether (and fork cheaper). Advisory: ignore failure.
  ::madvise(base, 2 * size, MADV_DONTFORK);
  memory m;
  m.data_ = bytes;
  m.size_ = size;
  m.mirrored_ = true;
  return m;
}

void memory::unmap(std::byte* data, std::size_t size) noexcept { ::munmap(data, 2 * size); }

}  // namespace userpipe::detail
