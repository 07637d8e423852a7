// multi_writer: several writers for one pipe, atomic small writes, EOF after
// the last writer, broken_pipe to every writer.
#include "userpipe/multi_writer.hpp"

#include <gtest/gtest.h>
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "userpipe/pipe.hpp"

namespace {

using namespace std::chrono_literals;
using userpipe::make_pipe;
using userpipe::multi_writer;

std::size_t scaled(std::size_t n) {
  char const* env = std::getenv("USERPIPE_STRESS_MIB");
  std::size_t const mib = env ? std::strtoull(env, nullptr, 10) : 128;
  return std::max<std::size_t>(1, n * mib / 128);
}

TEST(MultiWriter, EndOfFileOnlyAfterTheLastWriterCloses) {
  auto [r, w] = make_pipe();
  multi_writer a(std::move(w));
  EXPECT_FALSE(w.is_open());
  multi_writer b = a.clone();
  multi_writer c = b.clone();
  a.write("a");
  b.write("b");
  c.write("c");
  a.close();
  {
    multi_writer gone = std::move(b);  // destroying closes too
  }
  std::byte buf[8];
  EXPECT_EQ(r.read(std::span(buf).first(3)), 3u);
  std::error_code ec;
  EXPECT_EQ(r.try_read_some(buf, ec), 0u);
  EXPECT_EQ(ec, std::errc::resource_unavailable_try_again);  // c is still open
  c.close();
  EXPECT_EQ(r.read_some(buf), 0u);  // EOF
}

TEST(MultiWriter, CloseReasonReachesTheReaderAfterTheLastWriter) {
  auto [r, w] = make_pipe();
  multi_writer a(std::move(w));
  multi_writer b = a.clone();
  a.close(std::make_error_code(std::errc::connection_aborted));
  b.write("late");
  b.close(std::make_error_code(std::errc::connection_reset));  // the first reason wins
  std::byte buf[8];
  EXPECT_EQ(r.read_some(buf), 4u);  // every writer's bytes come first
  std::error_code ec;
  r.read_some(buf, ec);
  EXPECT_EQ(ec, std::errc::connection_aborted);
}

TEST(MultiWriter, ClosedWriterCannotWriteOrClone) {
  auto [r, w] = make_pipe();
  multi_writer a(std::move(w));
  multi_writer b = a.clone();
  a.close();
  std::error_code ec;
  a.write("x", ec);
  EXPECT_EQ(ec, std::errc::bad_file_descriptor);
  EXPECT_THROW(a.clone(), std::system_error);
  EXPECT_TRUE(b.is_open());
  EXPECT_THROW(multi_writer{userpipe::writer{}}, std::system_error);
}

TEST(MultiWriter, SmallTryWriteIsAllOrNothing) {
  auto [r, w] = make_pipe({.capacity = 4096});
  multi_writer a(std::move(w));
  std::vector<std::byte> data(4000);
  a.write(data);
  std::error_code ec;
  EXPECT_EQ(a.try_write_some(std::span(data).first(200), ec), 0u);
  EXPECT_EQ(ec, std::errc::resource_unavailable_try_again);
  EXPECT_EQ(r.available(), 4000u);
  EXPECT_EQ(a.try_write_some(std::span(data).first(96), ec), 96u);
}

TEST(MultiWriter, TimedWriteOfAtMostPipeBufIsAllOrNothing) {
  auto [r, w] = make_pipe({.capacity = 4096});
  multi_writer a(std::move(w));
  multi_writer b = a.clone();
  std::vector<std::byte> data(4000);
  a.write(data);
  std::error_code ec;
  EXPECT_EQ(b.write_for(std::span(data).first(200), 1ms, ec), 0u);  // 96 bytes would fit
  EXPECT_EQ(ec, std::errc::timed_out);
  EXPECT_EQ(r.available(), 4000u);
  auto span = a.prepare(1);  // a holds the pipe: b times out waiting for it
  EXPECT_EQ(b.write_for(std::span(data).first(10), 1ms, ec), 0u);
  EXPECT_EQ(ec, std::errc::timed_out);
  b.try_write_message(std::span(data).first(8), ec);
  EXPECT_EQ(ec, std::errc::resource_unavailable_try_again);
  a.commit(0);
  EXPECT_EQ(b.write_for(std::span(data).first(96), 1ms, ec), 96u);
  EXPECT_FALSE(ec);
  EXPECT_FALSE(span.empty());
}

TEST(MultiWriter, PrepareHoldsThePipeUntilCommit) {
  auto [r, w] = make_pipe({.capacity = 4096});
  multi_writer a(std::move(w));
  multi_writer b = a.clone();
  auto span = a.prepare(10);
  std::memcpy(span.data(), "0123456789", 10);
  std::error_code ec;
  std::thread t([&b, &ec] { EXPECT_EQ(b.try_write_some(std::as_bytes(std::span("xy", 2)), ec), 0u); });
  t.join();
  EXPECT_EQ(ec, std::errc::resource_unavailable_try_again);  // a holds the pipe
  a.commit(10);
  EXPECT_EQ(b.try_write_some(std::as_bytes(std::span("xy", 2)), ec), 2u);
  char buf[12];
  EXPECT_EQ(r.read(std::as_writable_bytes(std::span(buf))), 12u);
  EXPECT_EQ(std::string_view(buf, 12), "0123456789xy");
}

TEST(MultiWriter, BrokenPipeReachesEveryWriterBlockedOrNot) {
  auto [r, w] = make_pipe({.capacity = 4096});
  multi_writer first(std::move(w));
  std::vector<multi_writer> writers;
  for (int i = 0; i < 3; ++i) writers.push_back(first.clone());
  writers.push_back(std::move(first));
  std::atomic<int> broken{0};
  std::vector<std::thread> threads;
  for (auto& w : writers)
    threads.emplace_back([&w, &broken] {
      std::vector<std::byte> data(10000);
      std::error_code ec;
      while (!ec) w.write(data, ec);  // blocks: the reader reads a little only
      if (ec == std::errc::broken_pipe) ++broken;
    });
  std::byte buf[100];
  r.read(buf);
  r.close();
  for (auto& t : threads) t.join();
  EXPECT_EQ(broken.load(), 4);
}

/// A record: writer id, sequence number, length, then bytes derived from them.
struct record_header {
  std::uint32_t writer;
  std::uint32_t length;  // of the whole record
  std::uint64_t seq;
};

void fill_record(std::span<std::byte> out, std::uint32_t writer, std::uint64_t seq) {
  record_header h{writer, static_cast<std::uint32_t>(out.size()), seq};
  std::memcpy(out.data(), &h, sizeof h);
  for (std::size_t i = sizeof h; i < out.size(); ++i)
    out[i] = static_cast<std::byte>((seq + i * 13 + writer) & 0xff);
}

/// `n` writers for the pipe `w` writes to: `w` taken over, and n - 1 clones.
std::vector<multi_writer> writers_of(userpipe::writer w, int n) {
  multi_writer first(std::move(w));
  std::vector<multi_writer> ends;
  for (int i = 1; i < n; ++i) ends.push_back(first.clone());
  ends.push_back(std::move(first));
  return ends;
}

TEST(MultiWriterStress, WritesOfAtMostPipeBufNeverInterleave) {
  constexpr int writers = 4;
  std::size_t const per_writer = scaled(400'000) / writers;
  auto [r, w] = make_pipe({.capacity = 16384});
  auto ends = writers_of(std::move(w), writers);
  std::vector<std::thread> threads;
  for (int id = 0; id < writers; ++id)
    threads.emplace_back([&ends, id, per_writer] {
      auto& w = ends[id];
      std::mt19937 rng(id + 7);
      std::vector<std::byte> rec(multi_writer::atomic_write_max);
      for (std::uint64_t seq = 0; seq < per_writer; ++seq) {
        std::size_t const size =
            sizeof(record_header) +
            (rng() % 16 == 0 ? rng() % (rec.size() - sizeof(record_header)) : rng() % 100);
        auto r = std::span(rec).first(size);
        fill_record(r, id, seq);
        switch (seq % 4) {  // every way of writing a small record
          case 0:
            w.write(r);
            break;
          case 1:
            ASSERT_EQ(w.write_some(r), size);
            break;
          case 2: {
            std::error_code ec;
            while (w.try_write_some(r, ec) == 0) {
              ASSERT_EQ(ec, std::errc::resource_unavailable_try_again);
              std::this_thread::yield();
            }
            break;
          }
          case 3: {
            // prepare/commit holds the pipe; the span may stop at the
            // ring's end, and then the record goes with write() instead.
            auto span = w.prepare(size);
            if (span.size() >= size) {
              std::memcpy(span.data(), r.data(), size);
              w.commit(size);
            } else {
              w.commit(0);
              w.write(r);
            }
            break;
          }
        }
      }
      w.close();
    });
  std::vector<std::uint64_t> next(writers, 0);
  std::vector<std::byte> rec(multi_writer::atomic_write_max);
  std::size_t bad = 0, count = 0;
  for (;;) {
    record_header h;
    std::size_t const n = r.read({reinterpret_cast<std::byte*>(&h), sizeof h});
    if (n == 0) break;
    ASSERT_EQ(n, sizeof h);
    ASSERT_LT(h.writer, static_cast<std::uint32_t>(writers));
    ASSERT_GE(h.length, sizeof h);
    ASSERT_LE(h.length, rec.size());
    ASSERT_EQ(h.seq, next[h.writer]) << "writer " << h.writer;
    ++next[h.writer];
    std::size_t const body = h.length - sizeof h;
    ASSERT_EQ(r.read(std::span(rec).first(body)), body);
    for (std::size_t i = 0; i < body; ++i)
      if (rec[i] != static_cast<std::byte>((h.seq + (i + sizeof h) * 13 + h.writer) & 0xff)) ++bad;
    ++count;
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(count, per_writer * writers);
}

/// Checks records read from a stream: each whole, in per-writer order.
struct record_checker {
  explicit record_checker(int writers) : next(writers, 0) {}
  std::vector<std::uint64_t> next;
  std::vector<std::byte> pending;  // bytes of a record not complete yet
  std::size_t records = 0;
  std::size_t bad = 0;

  /// Takes the next bytes of the stream; false at the first fault.
  bool feed(std::span<std::byte const> bytes) {
    pending.insert(pending.end(), bytes.begin(), bytes.end());
    std::size_t at = 0;
    while (pending.size() - at >= sizeof(record_header)) {
      record_header h;
      std::memcpy(&h, pending.data() + at, sizeof h);
      if (h.writer >= next.size() || h.length < sizeof h || h.seq != next[h.writer]) {
        ADD_FAILURE() << "writer " << h.writer << " seq " << h.seq << " length " << h.length << " after "
                      << records << " records";
        return false;
      }
      if (pending.size() - at < h.length) break;
      for (std::size_t i = sizeof h; i < h.length; ++i)
        if (pending[at + i] != static_cast<std::byte>((h.seq + i * 13 + h.writer) & 0xff)) ++bad;
      ++next[h.writer];
      ++records;
      at += h.length;
    }
    pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(at));
    return bad == 0;
  }
};

/// One record by a randomly chosen call, retried until it is in the pipe
/// (try_ and timed calls) or the pipe is broken. Returns the error that
/// ended it (clear: written). A record is always written whole or not at
/// all, so the stream stays parseable.
std::error_code write_record(multi_writer& w, std::span<std::byte const> rec, std::mt19937& rng) {
  std::error_code ec;
  bool const small = rec.size() <= multi_writer::atomic_write_max;
  for (;;) {
    unsigned const how = small ? rng() % 8 : 0;  // large: only write() keeps it whole
    switch (how) {
      case 0:
      case 1:
        w.write(rec, ec);
        return ec;
      case 2: {
        std::size_t const n = w.write_some(rec, ec);
        if (!ec) {
          EXPECT_EQ(n, rec.size());
        }
        return ec;
      }
      case 3: {
        std::size_t const n = w.try_write_some(rec, ec);
        if (ec == std::errc::resource_unavailable_try_again) {
          EXPECT_EQ(n, 0u);
          std::this_thread::yield();
          continue;
        }
        if (!ec) {
          EXPECT_EQ(n, rec.size());
        }
        return ec;
      }
      case 4: {
        std::size_t const n = w.write_for(rec, std::chrono::microseconds(rng() % 300), ec);
        if (ec == std::errc::timed_out) {
          EXPECT_EQ(n, 0u);
          continue;
        }
        if (!ec) {
          EXPECT_EQ(n, rec.size());
        }
        return ec;
      }
      case 5:
      case 6: {
        auto span = w.prepare(rec.size(), ec);
        if (ec) return ec;
        if (span.size() >= rec.size()) {
          std::memcpy(span.data(), rec.data(), rec.size());
          w.commit(rec.size(), ec);
          return ec;
        }
        w.commit(0, ec);  // stops at the ring's end: let go, another call then
        if (ec) return ec;
        continue;
      }
      case 7: {
        auto span = w.try_prepare(ec);
        if (ec) return ec;
        if (span.size() >= rec.size()) {
          std::memcpy(span.data(), rec.data(), rec.size());
          w.commit(rec.size(), ec);
          return ec;
        }
        if (!span.empty()) w.commit(0, ec);
        if (ec) return ec;
        std::this_thread::yield();
        continue;
      }
    }
  }
}

std::size_t record_size(std::mt19937& rng) {
  std::size_t const roll = rng() % 64;
  if (roll == 0) return 9000 + rng() % 12000;  // larger than the ring: write() holds the pipe
  if (roll < 8)
    return sizeof(record_header) + rng() % (multi_writer::atomic_write_max - sizeof(record_header));
  return sizeof(record_header) + rng() % 200;
}

/// `writers` threads write `per_writer` records each, every record by a
/// randomly chosen call (write_record), into a pipe made with `opts`; the
/// reader takes random amounts and checks every record whole and in
/// per-writer order.
void records_arrive_whole(userpipe::options const& opts, int writers, std::size_t per_writer, unsigned seed) {
  auto [r, w] = make_pipe(opts);
  auto ends = writers_of(std::move(w), writers);
  std::vector<std::thread> threads;
  for (int id = 0; id < writers; ++id)
    threads.emplace_back([&ends, id, per_writer, seed] {
      std::mt19937 rng(id + seed);
      std::vector<std::byte> rec(21000);
      for (std::uint64_t seq = 0; seq < per_writer; ++seq) {
        auto span = std::span(rec).first(record_size(rng));
        fill_record(span, id, seq);
        if (auto ec = write_record(ends[id], span, rng)) {
          ADD_FAILURE() << "writer " << id << ": " << ec.message();  // then close: the reader must not hang
          break;
        }
      }
      ends[id].close();
    });
  record_checker check(writers);
  std::mt19937 rng(seed);
  std::vector<std::byte> buf(20000);
  for (;;) {
    std::size_t const n = r.read_some(std::span(buf).first(1 + rng() % buf.size()));
    if (n == 0) break;
    if (!check.feed(std::span(buf).first(n))) break;
  }
  r.close();
  for (auto& t : threads) t.join();
  EXPECT_EQ(check.bad, 0u);
  EXPECT_TRUE(check.pending.empty());
  EXPECT_EQ(check.records, per_writer * writers);
}

// Many writers, every call kind (blocking, try_, timed with random short
// deadlines, prepare/commit, try_prepare), random sizes from 16 bytes to
// more than the ring: every record whole and in per-writer order.
TEST(MultiWriterStress, EveryCallKindWithTimeoutsAndTryCallsNeverInterleaves) {
  records_arrive_whole({.capacity = 8192}, 6, scaled(240'000) / 6, 101);
}

// The reader closes in mid-stream while writers are in every phase (writing,
// waiting for room, waiting for the pipe): every writer ends with
// broken_pipe, and what was read before is whole.
TEST(MultiWriterStress, ReaderClosingMidStreamBreaksEveryWriter) {
  constexpr int writers = 6;
  for (int round = 0; round < static_cast<int>(scaled(40)); ++round) {
    auto [r, w] = make_pipe({.capacity = 4096});
    auto ends = writers_of(std::move(w), writers);
    std::atomic<int> broken{0};
    std::vector<std::thread> threads;
    for (int id = 0; id < writers; ++id)
      threads.emplace_back([&ends, &broken, id, round] {
        std::mt19937 rng(id * 1000 + round);
        std::vector<std::byte> rec(21000);
        for (std::uint64_t seq = 0;; ++seq) {
          auto span = std::span(rec).first(record_size(rng));
          fill_record(span, id, seq);
          if (std::error_code ec = write_record(ends[id], span, rng)) {
            EXPECT_EQ(ec, std::errc::broken_pipe);
            ++broken;
            return;
          }
        }
      });
    record_checker check(writers);
    std::mt19937 rng(round);
    std::vector<std::byte> buf(4096);
    std::size_t const stop_after = rng() % 200'000;
    for (std::size_t total = 0; total < stop_after;) {
      std::size_t const n = r.read_some(std::span(buf).first(1 + rng() % buf.size()));
      ASSERT_NE(n, 0u);
      total += n;
      if (!check.feed(std::span(buf).first(n))) break;
    }
    r.close();
    for (auto& t : threads) t.join();
    EXPECT_EQ(broken.load(), writers);
    EXPECT_EQ(check.bad, 0u);
  }
}

// A shared pipe (its bell has one waker at a time) with many writers in
// this process: still whole and in order.
TEST(MultiWriterStress, SharedPipeWritersNeverInterleave) {
  records_arrive_whole({.capacity = 8192, .shared = true}, 4, scaled(40'000) / 4, 77);
}

// A reader that waits on its ready descriptor is woken by a callback that
// whichever writer publishes runs: no wake-up is lost, every record
// arrives.
TEST(MultiWriterStress, ReaderOnItsReadyDescriptorMissesNoWakeUp) {
  constexpr int writers = 4;
  std::size_t const per_writer = scaled(40'000) / writers;
  auto [r, w] = make_pipe({.capacity = 8192});
  auto ends = writers_of(std::move(w), writers);
  std::vector<std::thread> threads;
  for (int id = 0; id < writers; ++id)
    threads.emplace_back([&ends, id, per_writer] {
      std::mt19937 rng(id + 55);
      std::vector<std::byte> rec(multi_writer::atomic_write_max);
      for (std::uint64_t seq = 0; seq < per_writer; ++seq) {
        auto span = std::span(rec).first(sizeof(record_header) + rng() % 300);
        fill_record(span, id, seq);
        if (auto ec = write_record(ends[id], span, rng)) {
          ADD_FAILURE() << "writer " << id << ": " << ec.message();  // then close: the reader must not hang
          break;
        }
      }
      ends[id].close();
    });
  int const fd = r.ready_descriptor();
  record_checker check(writers);
  std::vector<std::byte> buf(5000);
  bool eof = false, hung = false;
  while (!eof && !hung) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20'000) != 1) {  // a lost wake-up: fail, do not hang
      hung = true;
      break;
    }
    for (;;) {  // until it would block, as the descriptor's contract asks
      std::error_code ec;
      std::size_t const n = r.try_read_some(buf, ec);
      if (ec == std::errc::resource_unavailable_try_again) break;
      ASSERT_FALSE(ec);
      if (n == 0) {
        eof = true;
        break;
      }
      ASSERT_TRUE(check.feed(std::span(buf).first(n)));
    }
  }
  if (hung) r.close();  // lets the writers finish with broken_pipe
  for (auto& t : threads) t.join();
  EXPECT_FALSE(hung);
  EXPECT_EQ(check.bad, 0u);
  EXPECT_EQ(check.records, per_writer * writers);
}

// Messages from many writers by every message call, sizes up to the
// largest the ring takes: each read whole and in per-writer order.
TEST(MultiWriterStress, MessagesFromEveryCallNeverInterleave) {
  constexpr int writers = 5;
  std::size_t const per_writer = scaled(200'000) / writers;
  auto [r, w] = make_pipe({.capacity = 8192});
  auto ends = writers_of(std::move(w), writers);
  std::size_t const largest = ends[0].max_message_size();
  std::vector<std::thread> threads;
  for (int id = 0; id < writers; ++id)
    threads.emplace_back([&ends, id, per_writer, largest] {
      std::mt19937 rng(id + 31);
      std::vector<std::byte> msg(largest);
      for (std::uint64_t seq = 0; seq < per_writer; ++seq) {
        std::size_t const roll = rng() % 32;
        std::size_t const size =
            sizeof(record_header) + (roll == 0  ? rng() % (largest - sizeof(record_header) + 1)
                                     : roll < 4 ? rng() % 4000
                                                : rng() % 100);
        auto span = std::span(msg).first(size);
        fill_record(span, id, seq);
        std::error_code ec;
        for (bool done = false; !done;) {
          switch (rng() % 3) {
            case 0:
              ends[id].write_message(span, ec);
              ASSERT_FALSE(ec);
              done = true;
              break;
            case 1:
              ends[id].try_write_message(span, ec);
              if (ec == std::errc::resource_unavailable_try_again) {
                std::this_thread::yield();
                break;
              }
              ASSERT_FALSE(ec);
              done = true;
              break;
            case 2:
              ends[id].write_message_until(
                  span, std::chrono::steady_clock::now() + std::chrono::microseconds(rng() % 300), ec);
              if (ec == std::errc::timed_out) break;
              ASSERT_FALSE(ec);
              done = true;
              break;
          }
        }
      }
      ends[id].close();
    });
  std::vector<std::uint64_t> next(writers, 0);
  std::vector<std::byte> buf(largest);
  std::size_t count = 0, bad = 0;
  for (;;) {
    std::size_t const n = r.read_message(buf);
    if (n == 0) break;
    record_header h;
    ASSERT_GE(n, sizeof h);
    std::memcpy(&h, buf.data(), sizeof h);
    ASSERT_LT(h.writer, static_cast<std::uint32_t>(writers));
    ASSERT_EQ(h.length, n);
    ASSERT_EQ(h.seq, next[h.writer]) << "writer " << h.writer;
    ++next[h.writer];
    for (std::size_t i = sizeof h; i < n; ++i)
      if (buf[i] != static_cast<std::byte>((h.seq + i * 13 + h.writer) & 0xff)) ++bad;
    ++count;
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(count, per_writer * writers);
}

}  // namespace
