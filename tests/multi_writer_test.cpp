// multi_writer: several writers for one pipe, atomic small writes, EOF after
// the last writer, broken_pipe to every writer.
#include "userpipe/multi_writer.hpp"

#include <gtest/gtest.h>

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

TEST(MultiWriterStress, WritesOfAtMostPipeBufNeverInterleave) {
  constexpr int writers = 4;
  std::size_t const per_writer = scaled(400'000) / writers;
  auto [r, w] = make_pipe({.capacity = 16384});
  multi_writer first(std::move(w));
  std::vector<multi_writer> ends;
  for (int i = 1; i < writers; ++i) ends.push_back(first.clone());
  ends.push_back(std::move(first));
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

}  // namespace
