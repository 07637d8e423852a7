// 64 pipes, each with its own writer and reader thread: 128 busy threads on
// a machine with a few CPUs, the normal case in a server. Random write and
// read sizes through the copying and zero-copy calls, every byte checked;
// some readers close mid-stream (their writer must get broken_pipe, not
// hang) and some writers close with an error (their reader must get it
// after the last byte). Nothing here may hang when threads outnumber CPUs
// many times over: a spinning side must not starve the side it waits for.
//
// Bounded in time, not asserted on it: each writer stops after its volume
// (USERPIPE_OVERSUB_MIB in all, default 128) or USERPIPE_OVERSUB_SECONDS
// (default 10), whichever comes first, and the check covers whatever moved.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <random>
#include <thread>
#include <userpipe/pipe.hpp>
#include <vector>

namespace {

std::uint64_t env(char const* name, std::uint64_t fallback) {
  char const* v = std::getenv(name);
  return v ? std::strtoull(v, nullptr, 10) : fallback;
}

std::byte pattern(std::uint64_t i, unsigned pipe) {
  return static_cast<std::byte>(((i + pipe * 7919u) * 2654435761u) >> 13);
}

std::size_t random_size(std::mt19937_64& rng, std::size_t max) {
  int const bits = std::uniform_int_distribution<int>(0, 16)(rng);
  return std::min<std::size_t>(std::uniform_int_distribution<std::size_t>(1, std::size_t{1} << bits)(rng),
                               max);
}

/// What each pipe of the 64 does.
struct plan {
  unsigned index;
  std::size_t capacity;
  bool zero_copy_writer;
  bool zero_copy_reader;
  std::uint64_t reader_stops_after;  // UINT64_MAX: reads to EOF
  std::error_code close_reason;      // the writer's
};

struct outcome {
  std::uint64_t written = 0;
  std::error_code write_error;
  std::uint64_t read = 0;
  std::uint64_t first_bad = UINT64_MAX;
  bool saw_eof = false;
  std::error_code eof_error;
  bool out_of_time = false;  // the writer stopped at the deadline, short of its volume
};

void produce(userpipe::writer& w, plan const& p, std::uint64_t volume,
             std::chrono::steady_clock::time_point deadline, outcome& out) {
  std::mt19937_64 rng(p.index * 2 + 1);
  std::vector<std::byte> chunk(1 << 16);
  std::error_code ec;
  while (out.written < volume && !ec) {
    if ((out.written & 0xff) == 0 && std::chrono::steady_clock::now() > deadline) {
      out.out_of_time = true;
      break;
    }
    std::size_t n = random_size(rng, volume - out.written);
    if (!p.zero_copy_writer || (rng() & 7) == 0) {
      for (std::size_t i = 0; i < n; ++i) chunk[i] = pattern(out.written + i, p.index);
      out.written +=
          (rng() & 1) ? w.write(std::span(chunk).first(n), ec) : w.write_some(std::span(chunk).first(n), ec);
    } else {
      auto span = w.prepare(std::min(n, p.capacity), ec);
      if (ec) break;
      n = std::min(n, span.size());
      for (std::size_t i = 0; i < n; ++i) span[i] = pattern(out.written + i, p.index);
      w.commit(n);
      out.written += n;
    }
  }
  out.write_error = ec;
  w.close(p.close_reason);
}

void consume(userpipe::reader& r, plan const& p, outcome& out) {
  std::mt19937_64 rng(p.index * 2 + 2);
  std::vector<std::byte> buf(1 << 16);
  auto check = [&](std::span<std::byte const> got) {
    for (std::size_t i = 0; i < got.size() && out.first_bad == UINT64_MAX; ++i)
      if (got[i] != pattern(out.read + i, p.index)) out.first_bad = out.read + i;
    out.read += got.size();
  };
  while (out.read < p.reader_stops_after) {
    std::error_code ec;
    if (!p.zero_copy_reader || (rng() & 7) == 0) {
      auto span = std::span(buf).first(random_size(rng, buf.size()));
      std::size_t const n = r.read_some(span, ec);
      check(span.first(n));
      if (n == 0) {
        out.saw_eof = true;
        out.eof_error = ec;
        break;
      }
    } else {
      auto data = r.peek(ec);
      if (data.empty()) {
        out.saw_eof = true;
        out.eof_error = ec;
        break;
      }
      std::size_t const n = std::min(data.size(), random_size(rng, data.size()));
      check(data.first(n));
      r.consume(n);
    }
  }
  r.close();
}

TEST(Oversubscription, SixtyFourPipesOnTwoThreadsEachDeliverEveryByte) {
  constexpr unsigned pipes = 64;
  std::uint64_t const volume = (env("USERPIPE_OVERSUB_MIB", 128) << 20) / 64;  // per pipe
  auto const deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(env("USERPIPE_OVERSUB_SECONDS", 10));

  std::vector<plan> plans;
  std::size_t const capacities[] = {64, 256, 4096, 65536};
  for (unsigned i = 0; i < pipes; ++i) {
    plan p{.index = i,
           .capacity = capacities[i % 4],
           .zero_copy_writer = (i / 4) % 2 == 1,
           .zero_copy_reader = (i / 8) % 2 == 1,
           .reader_stops_after = i % 16 == 15 ? volume / 3 : UINT64_MAX,
           .close_reason = i % 16 == 7 ? std::make_error_code(std::errc::io_error) : std::error_code{}};
    plans.push_back(p);
  }

  std::vector<userpipe::reader> readers;
  std::vector<userpipe::writer> writers;
  for (auto const& p : plans) {
    auto [r, w] = userpipe::make_pipe({.capacity = p.capacity});
    readers.push_back(std::move(r));
    writers.push_back(std::move(w));
  }
  std::vector<outcome> outcomes(pipes);
  std::vector<std::thread> threads;
  threads.reserve(2 * pipes);
  for (unsigned i = 0; i < pipes; ++i) {
    threads.emplace_back([&, i] { produce(writers[i], plans[i], volume, deadline, outcomes[i]); });
    threads.emplace_back([&, i] { consume(readers[i], plans[i], outcomes[i]); });
  }
  for (auto& t : threads) t.join();

  std::uint64_t moved = 0, writer_sleeps = 0, reader_sleeps = 0;
  for (unsigned i = 0; i < pipes; ++i) {
    auto const& p = plans[i];
    auto const& o = outcomes[i];
    SCOPED_TRACE(::testing::Message() << "pipe " << i << ", capacity " << p.capacity);
    EXPECT_EQ(o.first_bad, UINT64_MAX) << "first wrong byte at offset " << o.first_bad;
    EXPECT_LE(o.read, o.written);
    if (p.reader_stops_after == UINT64_MAX) {
      // Read to EOF: every byte written, then the writer's reason.
      EXPECT_TRUE(o.saw_eof);
      EXPECT_EQ(o.read, o.written);
      EXPECT_EQ(o.eof_error, p.close_reason);
      EXPECT_FALSE(o.write_error);
    } else if (o.write_error) {
      // The reader closed under the writer: broken_pipe, never a hang.
      EXPECT_EQ(o.write_error, std::errc::broken_pipe);
    }
    // How much moved: the whole volume unless the deadline or the reader's
    // close stopped the writer, and the pipe's own counters agree.
    EXPECT_GT(o.written, 0u) << "every pipe makes progress";
    if (!o.out_of_time && !o.write_error) {
      EXPECT_EQ(o.written, volume);
    }
    if (o.written >= p.reader_stops_after) {
      EXPECT_GE(o.read, p.reader_stops_after);
    }
    auto const s = readers[i].stats();  // a closed end still answers
    EXPECT_EQ(s.bytes_written, o.written);
    if (p.reader_stops_after == UINT64_MAX) {
      EXPECT_EQ(s.bytes_read, o.read);
    }
    writer_sleeps += s.writer_sleeps;
    reader_sleeps += s.reader_sleeps;
    moved += o.read;
  }
  std::printf(
      "64 pipes, 128 threads on %u CPUs: %llu MiB checked; futex sleeps: writers %llu, readers %llu\n",
      std::thread::hardware_concurrency(), static_cast<unsigned long long>(moved >> 20),
      static_cast<unsigned long long>(writer_sleeps), static_cast<unsigned long long>(reader_sleeps));
}

}  // namespace
