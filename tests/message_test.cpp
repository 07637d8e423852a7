// Message mode: write_message / read_message keep boundaries, like a packet
// pipe (pipe2 O_DIRECT) or a SOCK_SEQPACKET socket.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "userpipe/multi_writer.hpp"
#include "userpipe/pipe.hpp"

namespace {

using namespace std::chrono_literals;
using userpipe::make_pipe;

std::string text(std::span<std::byte const> b) { return {reinterpret_cast<char const*>(b.data()), b.size()}; }

std::size_t scaled(std::size_t n) {
  char const* env = std::getenv("USERPIPE_STRESS_MIB");
  std::size_t const mib = env ? std::strtoull(env, nullptr, 10) : 128;
  return std::max<std::size_t>(1, n * mib / 128);
}

TEST(Message, EachWriteIsReadBackWholeAndAlone) {
  auto [r, w] = make_pipe({.capacity = 256});
  w.write_message("ab");
  w.write_message("cde");
  w.write_message("f");
  char buf[64];
  std::span<std::byte> out(reinterpret_cast<std::byte*>(buf), sizeof buf);
  EXPECT_EQ(r.read_message(out), 2u);
  EXPECT_EQ(std::string_view(buf, 2), "ab");
  EXPECT_EQ(r.read_message(out), 3u);
  EXPECT_EQ(std::string_view(buf, 3), "cde");
  EXPECT_EQ(r.read_message(out), 1u);
  EXPECT_EQ(buf[0], 'f');
}

TEST(Message, EmptyMessageSendsNothing) {
  auto [r, w] = make_pipe();
  w.write_message("");
  EXPECT_EQ(r.available(), 0u);
  w.close();
  std::byte buf[8];
  EXPECT_EQ(r.read_message(buf), 0u);  // EOF, not an empty message
}

TEST(Message, LargerThanCapacityIsMessageSizeAndWritesNothing) {
  auto [r, w] = make_pipe({.capacity = 64});
  EXPECT_EQ(w.max_message_size(), 56u);
  std::vector<std::byte> big(57);
  std::error_code ec;
  w.write_message(big, ec);
  EXPECT_EQ(ec, std::errc::message_size);
  EXPECT_EQ(r.available(), 0u);
  EXPECT_THROW(w.write_message(big), std::system_error);
  w.try_write_message(big, ec);
  EXPECT_EQ(ec, std::errc::message_size);
  big.resize(56);
  w.write_message(big);  // the largest fits an empty pipe
  EXPECT_EQ(r.available(), 64u);
}

TEST(Message, TinyPipeTakesNoMessage) {
  auto [r, w] = make_pipe({.capacity = 8});
  EXPECT_EQ(w.max_message_size(), 0u);
  std::error_code ec;
  w.write_message("a", ec);
  EXPECT_EQ(ec, std::errc::message_size);
}

TEST(Message, SmallBufferLeavesMessageUnreadAndTellsItsSize) {
  auto [r, w] = make_pipe();
  w.write_message("hello world");
  std::byte small[4];
  std::error_code ec;
  EXPECT_EQ(r.read_message(small, ec), 11u);
  EXPECT_EQ(ec, std::errc::message_size);
  EXPECT_THROW(r.read_message(small), std::system_error);
  std::span<std::byte const> view;
  ASSERT_TRUE(r.read_message_view(view));
  EXPECT_EQ(text(view), "hello world");  // still there, whole
}

TEST(Message, TryCallsNeverBlock) {
  auto [r, w] = make_pipe({.capacity = 64});
  std::byte buf[64];
  std::error_code ec;
  EXPECT_EQ(r.try_read_message(buf, ec), 0u);
  EXPECT_EQ(ec, std::errc::resource_unavailable_try_again);
  EXPECT_THROW(r.try_read_message(buf), std::system_error);
  std::span<std::byte const> view;
  EXPECT_FALSE(r.try_read_message_view(view, ec));
  EXPECT_EQ(ec, std::errc::resource_unavailable_try_again);
  w.try_write_message(std::span(buf).first(40), ec);  // 48 framed
  EXPECT_FALSE(ec);
  w.try_write_message(std::span(buf).first(9), ec);  // 24 framed: does not fit in 16
  EXPECT_EQ(ec, std::errc::resource_unavailable_try_again);
  EXPECT_EQ(r.available(), 48u);                     // nothing of it written
  w.try_write_message(std::span(buf).first(8), ec);  // 16 framed: fits exactly
  EXPECT_FALSE(ec);
  EXPECT_EQ(r.try_read_message(buf, ec), 40u);
}

TEST(Message, TimedCallsTimeOut) {
  auto [r, w] = make_pipe({.capacity = 64});
  std::byte buf[64];
  std::error_code ec;
  EXPECT_EQ(r.read_message_for(buf, 1ms, ec), 0u);
  EXPECT_EQ(ec, std::errc::timed_out);
  w.write_message(std::span(buf).first(50));
  w.write_message_for(std::span(buf).first(1), 1ms, ec);
  EXPECT_EQ(ec, std::errc::timed_out);
  EXPECT_THROW(w.write_message_for(std::span(buf).first(1), 1ms), std::system_error);
  EXPECT_EQ(r.read_message_for(buf, 1s), 50u);
  w.write_message_for(std::span(buf).first(1), 1s, ec);
  EXPECT_FALSE(ec);
}

TEST(Message, EndOfFileAndCloseErrors) {
  auto [r, w] = make_pipe();
  w.write_message("last");
  w.close(std::make_error_code(std::errc::connection_reset));
  std::byte buf[16];
  EXPECT_EQ(r.read_message(buf), 4u);  // messages before the close come first
  std::error_code ec;
  EXPECT_EQ(r.read_message(buf, ec), 0u);
  EXPECT_EQ(ec, std::errc::connection_reset);
  std::span<std::byte const> view;
  EXPECT_FALSE(r.read_message_view(view, ec));
  EXPECT_EQ(ec, std::errc::connection_reset);
  r.close();
  auto [r2, w2] = make_pipe();
  r2.close();
  w2.write_message("x", ec);
  EXPECT_EQ(ec, std::errc::broken_pipe);
}

TEST(Message, MessageAcrossTheRingsEndIsWhole) {
  auto [r, w] = make_pipe({.capacity = 64});
  std::string const first(30, 'a'), second = "0123456789abcdefghijklmnopqrstuvwxyz";  // 36 bytes
  char buf[64];
  std::span<std::byte> out(reinterpret_cast<std::byte*>(buf), sizeof buf);
  for (int round = 0; round < 8; ++round) {  // the frame lands at every offset in turn
    w.write_message(first);
    EXPECT_EQ(r.read_message(out), first.size());
    w.write_message(second);
    if (round % 2 == 0) {
      EXPECT_EQ(r.read_message(out), second.size());
      EXPECT_EQ(std::string_view(buf, second.size()), second);
    } else {
      std::span<std::byte const> view;
      ASSERT_TRUE(r.read_message_view(view));
      EXPECT_EQ(text(view), second);
      r.release_message();  // else the next write waits for its room
    }
  }
}

TEST(Message, ViewHoldsItsRoomUntilReleased) {
  auto [r, w] = make_pipe({.capacity = 64});
  std::vector<std::byte> m(48, std::byte{7});
  w.write_message(m);
  std::span<std::byte const> view;
  ASSERT_TRUE(r.read_message_view(view));
  EXPECT_EQ(view.size(), 48u);
  std::error_code ec;
  w.try_write_message(m, ec);
  EXPECT_EQ(ec, std::errc::resource_unavailable_try_again);
  r.release_message();
  w.try_write_message(m, ec);
  EXPECT_FALSE(ec);
  ASSERT_TRUE(r.read_message_view(view));  // the next call would free it too
  EXPECT_EQ(view.size(), 48u);
  EXPECT_EQ(view[47], std::byte{7});
}

TEST(Message, MirroredPipeViewsAcrossTheWrap) {
  auto [r, w] = make_pipe({.capacity = 4096, .mirrored = true});
  std::string const a(3000, 'a');
  std::string b(3000, 'b');
  b[2999] = 'z';
  w.write_message(a);
  std::span<std::byte const> view;
  ASSERT_TRUE(r.read_message_view(view));
  EXPECT_EQ(text(view), a);
  r.release_message();
  w.write_message(b);  // straddles the end of the mapping
  ASSERT_TRUE(r.read_message_view(view));
  EXPECT_EQ(text(view), b);
}

TEST(Message, StreamBytesAreNotMessages) {
  auto [r, w] = make_pipe();
  w.write("plain bytes");
  std::byte buf[64];
  std::error_code ec;
  r.read_message(buf, ec);
  EXPECT_EQ(ec, std::errc::bad_message);
  w.write_message("m", ec);  // the head is no longer at a frame boundary
  EXPECT_EQ(ec, std::errc::invalid_argument);
}

TEST(Message, ReaderBlocksUntilAWholeMessageComes) {
  auto [r, w] = make_pipe({.capacity = 1024});
  std::thread t([&w] {
    std::this_thread::sleep_for(5ms);  // the read may block first, or not
    w.write_message("late");
  });
  std::byte buf[16];
  EXPECT_EQ(r.read_message(buf), 4u);
  t.join();
}

/// A message's content: who wrote it, its number, and bytes derived from both.
void fill(std::vector<std::byte>& m, std::uint8_t writer, std::uint64_t seq) {
  m[0] = std::byte{writer};
  std::memcpy(m.data() + 1, &seq, 8);
  for (std::size_t i = 9; i < m.size(); ++i)
    m[i] = static_cast<std::byte>((seq * 31 + i * 7 + writer) & 0xff);
}

void check(std::span<std::byte const> m, std::vector<std::uint64_t>& next, std::size_t& bad) {
  if (m.size() < 9) {
    ++bad;
    return;
  }
  auto const writer = static_cast<std::uint8_t>(m[0]);
  std::uint64_t seq;
  std::memcpy(&seq, m.data() + 1, 8);
  if (writer >= next.size() || seq != next[writer]++) {
    ++bad;
    return;
  }
  for (std::size_t i = 9; i < m.size(); ++i)
    if (m[i] != static_cast<std::byte>((seq * 31 + i * 7 + writer) & 0xff)) {
      ++bad;
      return;
    }
}

/// Several writer threads send random-size messages, each through its own
/// multi_writer; the reader checks each whole and in per-writer order.
void many_messages(userpipe::options opts, bool views) {
  constexpr int writers = 3;
  std::size_t const per_writer = scaled(2'000'000) / writers;
  auto [r, w] = make_pipe(opts);
  std::size_t const max_size = std::min<std::size_t>(w.max_message_size(), 2000);
  userpipe::multi_writer first(std::move(w));
  std::vector<userpipe::multi_writer> ends;
  for (int id = 1; id < writers; ++id) ends.push_back(first.clone());
  ends.push_back(std::move(first));
  std::vector<std::thread> threads;
  for (int id = 0; id < writers; ++id)
    threads.emplace_back([&, id] {
      auto& w = ends[id];
      std::mt19937 rng(id + 1);
      std::vector<std::byte> m(max_size);
      for (std::uint64_t seq = 0; seq < per_writer; ++seq) {
        // Mostly small, some up to the largest.
        std::size_t const size = 9 + (rng() % 8 == 0 ? rng() % (max_size - 8) : rng() % 120);
        m.resize(size);
        fill(m, static_cast<std::uint8_t>(id), seq);
        w.write_message(m);
      }
      w.close();  // EOF after the last one
    });
  std::vector<std::uint64_t> next(writers, 0);
  std::size_t bad = 0, count = 0;
  std::vector<std::byte> buf(max_size);
  for (;;) {
    if (views) {
      std::span<std::byte const> view;
      if (!r.read_message_view(view)) break;
      check(view, next, bad);
    } else {
      std::size_t const n = r.read_message(buf);
      if (n == 0) break;
      check(std::span(buf).first(n), next, bad);
    }
    ++count;
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(count, per_writer * writers);
  for (auto n : next) EXPECT_EQ(n, per_writer);
}

TEST(MessageStress, RandomSizesFromSeveralWritersArriveWholeAndInOrder) {
  many_messages({.capacity = 4096}, false);
}

TEST(MessageStress, ViewsOfRandomSizesFromSeveralWriters) { many_messages({.capacity = 8192}, true); }

TEST(MessageStress, MirroredViews) { many_messages({.capacity = 4096, .mirrored = true}, true); }

}  // namespace

namespace {

// A shared pipe (ring in a memfd) frames messages the same way.
TEST(Message, SharedPipeKeepsBoundaries) {
  auto [r, w] = make_pipe({.capacity = 4096, .shared = true});
  std::thread t([&w] {
    for (int i = 1; i <= 1000; ++i)
      w.write_message(std::string(static_cast<std::size_t>(i % 300 + 1), 'a' + i % 26));
    w.close();
  });
  char buf[512];
  std::span<std::byte> out(reinterpret_cast<std::byte*>(buf), sizeof buf);
  int i = 0;
  while (std::size_t const n = r.read_message(out)) {
    ++i;
    ASSERT_EQ(n, static_cast<std::size_t>(i % 300 + 1));
    ASSERT_EQ(buf[n - 1], 'a' + i % 26);
  }
  t.join();
  EXPECT_EQ(i, 1000);
}

}  // namespace
