// A byte stream every position of which is known: byte i is block[i % P]
// for a block of P (prime) random bytes made from a seed. Writers send it in
// random sizes straight from a doubled copy of the block; readers check each
// read with one memcmp. Shared by the shared-memory test and its child.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <userpipe/pipe.hpp>
#include <vector>

namespace userpipe_support {

class pattern {
 public:
  static constexpr std::size_t period = 65521;     // prime: no alignment with the ring
  static constexpr std::size_t max_chunk = 65536;  // largest random write or read

  explicit pattern(std::uint64_t seed) : bytes_(period + max_chunk) {
    std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (std::size_t i = 0; i < period; ++i) bytes_[i] = static_cast<std::byte>(next(x) >> 56);
    for (std::size_t i = period; i < bytes_.size(); ++i) bytes_[i] = bytes_[i - period];
  }

  /// The n bytes at stream position `at` (n <= max_chunk).
  std::span<std::byte const> at(std::uint64_t at, std::size_t n) const {
    return {bytes_.data() + at % period, n};
  }

  /// Random sizes, mostly small, sometimes up to max_chunk.
  static std::size_t size(std::uint64_t& x) {
    std::uint64_t const r = next(x);
    switch (r & 3) {
      case 0:
        return 1 + (r >> 8) % 64;
      case 1:
        return 1 + (r >> 8) % 4096;
      default:
        return 1 + (r >> 8) % max_chunk;
    }
  }

  static std::uint64_t next(std::uint64_t& x) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  }

  /// Writes `total` bytes of the stream in random sizes; throws what
  /// write throws.
  static void write(userpipe::writer& w, std::uint64_t total, std::uint64_t seed) {
    pattern const p(seed);
    std::uint64_t x = seed ^ 0x5555555555555555ull;
    for (std::uint64_t done = 0; done < total;) {
      std::size_t const n = static_cast<std::size_t>(std::min<std::uint64_t>(size(x), total - done));
      w.write(p.at(done, n));
      done += n;
    }
  }

  /// Reads in random sizes and checks every byte; true if exactly `total`
  /// right bytes came and then EOF. Throws what read_some throws.
  static bool read_and_check(userpipe::reader& r, std::uint64_t total, std::uint64_t seed) {
    std::uint64_t done = 0;
    return read_prefix(r, done, seed) && done == total;
  }

  /// Reads to EOF (or a read error, which it throws), checking every byte;
  /// `done` is the count that came. False at the first wrong byte.
  static bool read_prefix(userpipe::reader& r, std::uint64_t& done, std::uint64_t seed) {
    pattern const p(seed);
    std::uint64_t x = seed ^ 0xAAAAAAAAAAAAAAAAull;
    std::vector<std::byte> buffer(max_chunk);
    for (;;) {
      std::size_t const want = size(x);
      std::size_t const n = r.read_some(std::span(buffer.data(), want));
      if (n == 0) return true;
      if (std::memcmp(buffer.data(), p.at(done, n).data(), n) != 0) return false;
      done += n;
    }
  }

 private:
  std::vector<std::byte> bytes_;
};

}  // namespace userpipe_support
