// tests/fuzz/fuzz_input.hpp — what the userpipe fuzzers share: a cursor over
// the fuzzer's bytes (reads past the end yield zeros, so every input is a
// valid program) and the byte stream the writers send.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <system_error>

namespace userpipe_fuzz {

class input {
 public:
  input(std::uint8_t const* data, std::size_t size) noexcept : data_(data), size_(size) {}

  bool empty() const noexcept { return pos_ >= size_; }
  std::uint8_t byte() noexcept { return pos_ < size_ ? data_[pos_++] : 0; }
  /// A size in [0, max], biased to the small and to the edges: one byte
  /// picks 0, 1, max, max - 1, max + 1 (callers clamp) or a value below max.
  std::size_t size(std::size_t max) noexcept {
    std::uint8_t const b = byte();
    switch (b >> 5) {
      case 0:
        return b & 1;
      case 1:
        return max;
      case 2:
        return max == 0 ? 0 : max - 1;
      case 3:
        return max + 1;
      default: {
        std::size_t const v = (static_cast<std::size_t>(b & 31) << 8) | byte();
        return max == 0 ? 0 : v % (max + 1);
      }
    }
  }

 private:
  std::uint8_t const* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

/// The byte at stream offset i. Every value appears, so read_line finds
/// any delimiter; not periodic in a power of two, so a misplaced chunk shows.
inline std::byte pattern(std::uint64_t i) noexcept { return static_cast<std::byte>((i * 2654435761u) >> 13); }

/// The close reasons an input can pick: none (EOF / broken_pipe) or one of
/// two errors.
inline std::error_code reason(std::uint8_t b) noexcept {
  switch (b % 3) {
    case 1:
      return std::make_error_code(std::errc::io_error);
    case 2:
      return std::make_error_code(std::errc::connection_reset);
    default:
      return {};
  }
}

[[noreturn]] inline void fail(char const* what, long long got, long long want, int line) {
  std::fprintf(stderr, "userpipe fuzz: line %d: %s: got %lld, want %lld\n", line, what, got, want);
  std::abort();
}

}  // namespace userpipe_fuzz

// Checks that two values agree; on a mismatch prints both and aborts, which
// libFuzzer reports with the input that did it.
#define FUZZ_EQ(got, want)                                                        \
  do {                                                                            \
    auto const fuzz_got_ = (got);                                                 \
    auto const fuzz_want_ = (want);                                               \
    if (!(fuzz_got_ == fuzz_want_))                                               \
      ::userpipe_fuzz::fail(#got " == " #want, static_cast<long long>(fuzz_got_), \
                            static_cast<long long>(fuzz_want_), __LINE__);        \
  } while (0)
#define FUZZ_EC(got, want)                                                                       \
  do {                                                                                           \
    std::error_code const fuzz_got_ = (got);                                                     \
    std::error_code const fuzz_want_ = (want);                                                   \
    if (fuzz_got_ != fuzz_want_) {                                                               \
      std::fprintf(stderr, "error code: got '%s', want '%s'\n", fuzz_got_.message().c_str(),     \
                   fuzz_want_.message().c_str());                                                \
      ::userpipe_fuzz::fail(#got " == " #want, fuzz_got_.value(), fuzz_want_.value(), __LINE__); \
    }                                                                                            \
  } while (0)
