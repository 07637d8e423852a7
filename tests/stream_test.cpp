// The promises of userpipe/stream.hpp: ordinary stream code works over a
// pipe, every wrap and block of a tiny ring included, and a closed peer
// sets badbit instead of hanging.
#include <gtest/gtest.h>

#include <cstdlib>
#include <iomanip>
#include <limits>
#include <locale>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <userpipe/stream.hpp>
#include <vector>

#include "support/bytes.hpp"
#include "support/until.hpp"

using userpipe::make_pipe;

namespace {
using userpipe_support::bytes;
using userpipe_support::read_all;

/// What `values` look like formatted by a plain std::ostringstream.
template <class F>
std::string expected(F&& write) {
  std::ostringstream os;
  write(os);
  return os.str();
}

struct grouping : std::numpunct<char> {
  std::string do_grouping() const override { return "\3"; }
};

}  // namespace

TEST(Stream, FormattedValuesCrossATinyPipeBetweenThreads) {
  auto [r, w] = make_pipe({.capacity = 16});
  int const count = 5000;
  std::thread producer([w = std::move(w)]() mutable {
    userpipe::ostream os(std::move(w));
    for (int i = 0; i < count; ++i)
      os << i << ' ' << -i * 1000003LL << ' ' << i * 0.5 << " word" << i << '\n';
  });
  userpipe::istream is(std::move(r));
  int i = 0, value;
  long long big;
  double half;
  std::string word;
  for (; is >> value >> big >> half >> word; ++i) {
    ASSERT_EQ(value, i);
    ASSERT_EQ(big, -i * 1000003LL);
    ASSERT_EQ(half, i * 0.5);
    ASSERT_EQ(word, "word" + std::to_string(i));
  }
  producer.join();
  EXPECT_EQ(i, count);
  EXPECT_TRUE(is.eof());
  EXPECT_FALSE(is.bad());
}

TEST(Stream, GetlineReadsLinesThatStraddleTheWrapAndExceedTheCapacity) {
  for (bool mirrored : {false, true}) {
    auto [r, w] = make_pipe({.capacity = 16, .mirrored = mirrored});
    std::vector<std::string> lines;
    for (int i = 0; i < 3000; ++i)
      lines.push_back(std::string(static_cast<std::size_t>(i * 7 % 53), char('a' + i % 26)));
    std::thread producer([&lines, w = std::move(w)]() mutable {
      userpipe::ostream os(std::move(w));
      for (auto const& line : lines) os << line << '\n';
    });
    userpipe::istream is(std::move(r));
    std::string line;
    std::size_t n = 0;
    for (; std::getline(is, line); ++n) ASSERT_EQ(line, lines.at(n)) << n;
    producer.join();
    EXPECT_EQ(n, lines.size()) << mirrored;
  }
}

TEST(Stream, IntegersFormatExactlyAsStdOstreamDoes) {
  auto [r, w] = make_pipe();
  auto const write = [](std::ostream& os) {
    os << 0 << ' ' << std::numeric_limits<long long>::min() << ' '
       << std::numeric_limits<unsigned long long>::max() << ' ' << short(-7) << ' ' << std::hex << 255 << ' '
       << std::showbase << 255 << std::dec << ' ' << std::setw(6) << 42 << ' ' << std::showpos << 5
       << std::noshowpos << ' ' << std::setfill('0') << std::setw(4) << -3 << '|';
  };
  {
    userpipe::ostream os(w);
    // Through the userpipe::ostream type, so its own integer inserters run.
    os << 0 << ' ' << std::numeric_limits<long long>::min() << ' '
       << std::numeric_limits<unsigned long long>::max() << ' ' << short(-7) << ' ' << std::hex << 255 << ' '
       << std::showbase << 255 << std::dec << ' ' << std::setw(6) << 42 << ' ' << std::showpos << 5
       << std::noshowpos << ' ' << std::setfill('0') << std::setw(4) << -3 << '|';
  }
  w.close();
  EXPECT_EQ(read_all(r), expected(write));
}

TEST(Stream, AnImbuedGroupingLocaleIsHonoured) {
  auto [r, w] = make_pipe();
  {
    userpipe::ostream os(w);
    os.imbue(std::locale(std::locale::classic(), new grouping));
    os << 1234567 << ' ';
    os.imbue(std::locale::classic());
    os << 1234567;
  }
  w.close();
  EXPECT_EQ(read_all(r), "1,234,567 1234567");
}

TEST(Stream, ALocaleTakenByCopyfmtIsHonoured) {
  auto [r, w] = make_pipe();
  std::ostringstream grouped;
  grouped.imbue(std::locale(std::locale::classic(), new grouping));
  {
    userpipe::ostream os(w);
    os << 1000 << ' ';
    os.copyfmt(grouped);
    os << 1234567;
  }
  w.close();
  EXPECT_EQ(read_all(r), "1000 1,234,567");
}

TEST(Stream, JsonRoundTrips) {
  auto [r, w] = make_pipe({.capacity = 64});
  nlohmann::json const sent = {
      {"name", "userpipe"}, {"lines", 50000000}, {"ratios", {1.5, 2.0}}, {"ok", true}};
  std::thread producer([&sent, w = std::move(w)]() mutable {
    userpipe::ostream os(std::move(w));
    os << sent;
  });
  userpipe::istream is(std::move(r));
  nlohmann::json got;
  is >> got;
  producer.join();
  EXPECT_EQ(got, sent);
}

TEST(Stream, LargeWritesStreamThroughASmallPipe) {
  auto [r, w] = make_pipe({.capacity = 4096});
  std::string big(1 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 23);
  std::thread producer([&big, w = std::move(w)]() mutable {
    userpipe::ostream os(std::move(w));
    os << "head:" << big << ":tail";
  });
  EXPECT_EQ(read_all(r), "head:" + big + ":tail");
  producer.join();
}

TEST(Stream, OwningOstreamClosesTheEndWhenDestroyed) {
  auto [r, w] = make_pipe();
  {
    userpipe::ostream os(std::move(w));
    os << "last words";
  }
  EXPECT_EQ(read_all(r), "last words");
}

TEST(Stream, PipeEndIsTheEndTheStreamUses) {
  auto [r, w] = make_pipe();
  userpipe::ostream os(w);
  userpipe::istream is(std::move(r));
  EXPECT_EQ(&os.pipe_end(), &w) << "a borrowed end is the caller's own";
  os << "xy" << std::flush;
  EXPECT_EQ(is.get(), 'x');
  is.sync();
  EXPECT_EQ(is.pipe_end().stats().bytes_read, 1u) << "the owned end, with what the stream consumed";
}

TEST(Stream, BorrowedEndsAreUsableDirectlyAfterFlushAndSync) {
  auto [r, w] = make_pipe();
  userpipe::ostream os(w);
  userpipe::istream is(r);
  os << "abc" << std::flush;
  w.write("def");
  EXPECT_EQ(is.get(), 'a');
  is.sync();
  std::string rest(5, '\0');
  EXPECT_EQ(r.read(bytes(rest)), 5u);
  EXPECT_EQ(rest, "bcdef");
  EXPECT_TRUE(w.is_open());
}

TEST(Stream, NothingIsPublishedBeforeAFlush) {
  auto [r, w] = make_pipe();
  userpipe::ostream os(w);
  os << "pending";
  EXPECT_EQ(r.available(), 0u);
  os << std::endl;
  EXPECT_EQ(r.available(), 8u);
}

TEST(Stream, WriteAfterReaderClosedSetsBadbit) {
  auto [r, w] = make_pipe();
  userpipe::ostream os(w);
  r.close();
  os << "nobody listens" << std::flush;
  EXPECT_TRUE(os.bad());
  EXPECT_EQ(os.error(), std::errc::broken_pipe);
}

TEST(Stream, FlushOfBytesFormattedBeforeReaderClosedSetsBadbit) {
  auto [r, w] = make_pipe();
  userpipe::ostream os(w);
  os << "formatted while the reader was there";
  r.close();
  os.flush();
  EXPECT_TRUE(os.bad());
}

TEST(Stream, WriteAfterReaderClosedThrowsWhenExceptionsAreEnabled) {
  auto [r, w] = make_pipe();
  userpipe::ostream os(w);
  os.exceptions(std::ios::badbit);
  r.close();
  std::error_code code;
  try {
    os << 42 << std::flush;
  } catch (std::system_error const& e) {
    code = e.code();
  }
  EXPECT_EQ(code, std::errc::broken_pipe);
  EXPECT_TRUE(os.bad());
}

TEST(Stream, OstreamBlockedOnAFullPipeWakesWhenReaderCloses) {
  auto [r, w] = make_pipe({.capacity = 16});
  std::thread producer([w = std::move(w)]() mutable {
    userpipe::ostream os(std::move(w));
    while (os << "filling the pipe forever\n") {
    }
    EXPECT_TRUE(os.bad());
  });
  // Nothing reads, so the writer's first sleep is on the full pipe and only
  // the close can end it.
  ASSERT_TRUE(userpipe_support::wait_until_asleep(r, &userpipe::pipe_stats::writer_sleeps));
  r.close();
  producer.join();  // never hangs
}

TEST(Stream, WriterCloseErrorSetsBadbitOnTheIstream) {
  auto [r, w] = make_pipe();
  userpipe::istream is(r);
  w.write("12 ");
  w.close(std::make_error_code(std::errc::connection_reset));
  int a = 0, b = 0;
  is >> a;
  EXPECT_EQ(a, 12);
  is >> b;
  EXPECT_TRUE(is.bad());
  EXPECT_EQ(is.error(), std::errc::connection_reset);
}

TEST(Stream, WriterCloseErrorThrowsFromAnIstreamWithExceptions) {
  auto [r, w] = make_pipe();
  userpipe::istream is(r);
  is.exceptions(std::ios::badbit);
  w.close(std::make_error_code(std::errc::connection_reset));
  std::error_code code;
  try {
    std::string line;
    std::getline(is, line);
  } catch (std::system_error const& e) {
    code = e.code();
  }
  EXPECT_EQ(code, std::errc::connection_reset);
}

TEST(Stream, EndOfFileIsEofbitNotBadbit) {
  auto [r, w] = make_pipe();
  userpipe::istream is(r);
  w.write("only");
  w.close();
  std::string word;
  EXPECT_TRUE(is >> word);
  EXPECT_EQ(word, "only");
  EXPECT_FALSE(is >> word);
  EXPECT_TRUE(is.eof());
  EXPECT_FALSE(is.bad());
}

TEST(Stream, InAvailCountsUnreadBytes) {
  auto [r, w] = make_pipe();
  userpipe::istream is(r);
  w.write("abcdef");
  EXPECT_EQ(is.get(), 'a');
  EXPECT_EQ(is.rdbuf()->in_avail(), 5);
}

namespace {
/// Volume knob shared with stress_test: USERPIPE_STRESS_MIB (default 128)
/// scaled down, so the default run stays short under sanitizers.
std::size_t stress_lines() {
  char const* env = std::getenv("USERPIPE_STRESS_MIB");
  return static_cast<std::size_t>(env ? std::strtoull(env, nullptr, 10) : 128) * 200;
}

std::string record(std::size_t i) {
  std::uint64_t x = i * 0x9E3779B97F4A7C15ull;
  std::size_t const length = (x >> 40) % 300;
  std::string s = std::to_string(i) + ':';
  for (std::size_t k = 0; k < length; ++k) s += static_cast<char>('a' + (x >> (k % 50)) % 26);
  return s;
}
}  // namespace

TEST(StreamStress, RandomRecordsWithFlushesSurviveMixedReadersAndEveryWrap) {
  std::size_t const count = stress_lines();
  for (std::size_t capacity : {std::size_t{64}, std::size_t{4096}}) {
    for (bool mirrored : {false, true}) {
      auto [r, w] = make_pipe({.capacity = capacity, .mirrored = mirrored});
      std::thread producer([count, w = std::move(w)]() mutable {
        userpipe::ostream os(std::move(w));
        for (std::size_t i = 0; i < count; ++i) {
          os << record(i);
          if (i % 13 == 0)
            os << std::endl;  // commit mid-stream
          else
            os << '\n';
        }
      });
      // getline through the istream, and every 7th line the zero-copy
      // reader on the same end after is.sync().
      userpipe::istream is(r);
      std::string line;
      std::string_view view;
      std::size_t i = 0;
      for (; i < count; ++i) {
        if (i % 7 == 3) {
          is.sync();
          ASSERT_TRUE(r.read_line_view(view)) << i;
          ASSERT_EQ(view, record(i)) << i;
        } else {
          ASSERT_TRUE(std::getline(is, line)) << i;
          ASSERT_EQ(line, record(i)) << i;
        }
      }
      EXPECT_FALSE(std::getline(is, line));
      producer.join();
      EXPECT_EQ(i, count);
    }
  }
}
