// Moves hundreds of MiB between two threads with random write and read sizes
// (1-byte ones included) and checks every byte, in order, at several
// capacities and through both the copying and the zero-copy calls.
// USERPIPE_STRESS_MIB sets the volume per case (sanitizer builds use less).
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <thread>
#include <userpipe/pipe.hpp>
#include <vector>

namespace {

std::uint64_t volume() {
  char const* env = std::getenv("USERPIPE_STRESS_MIB");
  return (env ? std::strtoull(env, nullptr, 10) : 128) << 20;
}

/// The byte at stream offset i: not periodic in any power of two, so a
/// chunk delivered twice, dropped or misplaced is caught.
std::byte pattern(std::uint64_t i) { return static_cast<std::byte>((i * 2654435761u) >> 13); }

/// Sizes that exercise 1-byte calls, small ones and ones that straddle or
/// exceed the capacity, on a log scale.
std::size_t random_size(std::mt19937_64& rng, std::size_t max) {
  int const bits = std::uniform_int_distribution<int>(0, 17)(rng);
  std::size_t const n = std::uniform_int_distribution<std::size_t>(1, std::size_t{1} << bits)(rng);
  return std::min(n, max);
}

enum class api { copy, zero_copy };

struct result {
  std::uint64_t bytes = 0;
  std::uint64_t first_bad = UINT64_MAX;
};

void produce(userpipe::writer& w, std::uint64_t total, api how, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> chunk(1 << 17);
  std::uint64_t sent = 0;
  while (sent < total) {
    std::size_t n = random_size(rng, total - sent);
    if (how == api::copy) {
      for (std::size_t i = 0; i < n; ++i) chunk[i] = pattern(sent + i);
      if (rng() & 1) {
        w.write(std::span(chunk).first(n));
      } else {
        n = w.write_some(std::span(chunk).first(n));
      }
    } else {
      auto span = w.prepare(std::min(n, w.capacity()));
      n = std::min(n, span.size());
      for (std::size_t i = 0; i < n; ++i) span[i] = pattern(sent + i);
      w.commit(n);
    }
    sent += n;
  }
  w.close();
}

result consume(userpipe::reader& r, api how, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> buf(1 << 17);
  result out;
  for (;;) {
    std::size_t n;
    if (how == api::copy) {
      std::size_t const want = random_size(rng, buf.size());
      // read() returns short, and read_some() returns 0, only at EOF.
      n = (rng() & 3) == 0 ? r.read(std::span(buf).first(want)) : r.read_some(std::span(buf).first(want));
      for (std::size_t i = 0; i < n && out.first_bad == UINT64_MAX; ++i)
        if (buf[i] != pattern(out.bytes + i)) out.first_bad = out.bytes + i;
    } else {
      auto span = r.peek();  // empty only at EOF
      n = std::min(span.size(), random_size(rng, span.size() + 1));
      for (std::size_t i = 0; i < n && out.first_bad == UINT64_MAX; ++i)
        if (span[i] != pattern(out.bytes + i)) out.first_bad = out.bytes + i;
      r.consume(n);
    }
    if (n == 0) return out;
    out.bytes += n;
  }
}

class Stress : public ::testing::TestWithParam<std::tuple<std::size_t, api, api>> {};

TEST_P(Stress, EveryByteArrivesInOrder) {
  auto [capacity, write_api, read_api] = GetParam();
  std::uint64_t const total = volume() / (capacity < 1024 ? 8 : 1);  // tiny rings move fewer bytes per wake
  auto [r, w] = userpipe::make_pipe({.capacity = capacity});
  std::thread writer_thread([&w = w, total, write_api = write_api] { produce(w, total, write_api, 1); });
  result got = consume(r, read_api, 2);
  writer_thread.join();
  EXPECT_EQ(got.first_bad, UINT64_MAX) << "first wrong byte at offset " << got.first_bad;
  EXPECT_EQ(got.bytes, total);
  auto s = r.stats();
  EXPECT_EQ(s.bytes_written, total);
  EXPECT_EQ(s.bytes_read, total);
  std::printf(
      "capacity %zu: %llu MiB, writer waits %llu (slept %llu), reader waits %llu (slept %llu), wakes %llu\n",
      capacity, static_cast<unsigned long long>(total >> 20), static_cast<unsigned long long>(s.writer_waits),
      static_cast<unsigned long long>(s.writer_sleeps), static_cast<unsigned long long>(s.reader_waits),
      static_cast<unsigned long long>(s.reader_sleeps), static_cast<unsigned long long>(s.wakes));
}

INSTANTIATE_TEST_SUITE_P(Capacities, Stress,
                         ::testing::Combine(::testing::Values(64, 4096, 65536),
                                            ::testing::Values(api::copy, api::zero_copy),
                                            ::testing::Values(api::copy, api::zero_copy)));

TEST(StressClose, ReaderClosingMidStreamNeverHangsTheWriter) {
  for (int round = 0; round < 200; ++round) {
    auto [r, w] = userpipe::make_pipe({.capacity = 64});
    std::thread writer_thread([&w = w] {
      std::vector<std::byte> chunk(1000);
      std::error_code ec;
      while (!ec) w.write(chunk, ec);
      EXPECT_EQ(ec, std::errc::broken_pipe);
    });
    std::vector<std::byte> buf(static_cast<std::size_t>(round * 37 % 500 + 1));
    for (int i = 0; i < round % 7; ++i) r.read_some(buf);
    r.close();
    writer_thread.join();
  }
}

TEST(StressClose, WriterClosingMidStreamNeverHangsTheReader) {
  for (int round = 0; round < 200; ++round) {
    auto [r, w] = userpipe::make_pipe({.capacity = 64});
    std::uint64_t const n = static_cast<std::uint64_t>(round) * 13;
    std::thread writer_thread([&w = w, n] {
      std::vector<std::byte> chunk(n);
      for (std::size_t i = 0; i < n; ++i) chunk[i] = pattern(i);
      w.write(chunk);
      w.close();
    });
    std::vector<std::byte> buf(7);
    std::uint64_t got = 0;
    while (std::size_t k = r.read_some(buf)) {
      for (std::size_t i = 0; i < k; ++i) ASSERT_EQ(buf[i], pattern(got + i));
      got += k;
    }
    EXPECT_EQ(got, n);
    writer_thread.join();
  }
}

}  // namespace
