// The promises of reader::read_line_view: lines in order, zero-copy when
// the line lies whole in the ring, correct when it does not, and the ring
// holds a returned line until the next call.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <userpipe/pipe.hpp>
#include <vector>

using userpipe::make_pipe;

namespace {
std::span<std::byte const> bytes(std::string_view s) {
  return {reinterpret_cast<std::byte const*>(s.data()), s.size()};
}
}  // namespace

TEST(LineView, LinesArriveInOrderThroughATinyPipeAcrossWrapsAndLongLines) {
  for (bool mirrored : {false, true}) {
    auto [r, w] = make_pipe({.capacity = 16, .mirrored = mirrored});
    std::vector<std::string> lines;
    for (int i = 0; i < 5000; ++i)
      lines.push_back(std::string(static_cast<std::size_t>(i * 11 % 41), char('a' + i % 26)));
    std::thread producer([&lines, w = std::move(w)]() mutable {
      // Lines written whole and in pieces, so some arrive split.
      for (std::size_t i = 0; i < lines.size(); ++i) {
        if (i % 3 == 0) {
          w.write(lines[i] + "\n");
        } else {
          w.write(lines[i]);
          w.write("\n");
        }
      }
    });
    std::string_view line;
    std::size_t n = 0;
    for (; r.read_line_view(line); ++n) ASSERT_EQ(line, lines.at(n)) << n;
    producer.join();
    EXPECT_EQ(n, lines.size());
  }
}

TEST(LineView, AWholeLineIsAViewIntoTheRing) {
  auto [r, w] = make_pipe();
  w.write("first\nsecond\n");
  auto const* ring = reinterpret_cast<char const*>(r.peek().data());
  std::string_view line;
  ASSERT_TRUE(r.read_line_view(line));
  EXPECT_EQ(line, "first");
  EXPECT_EQ(line.data(), ring);
  ASSERT_TRUE(r.read_line_view(line));
  EXPECT_EQ(line, "second");
  EXPECT_EQ(line.data(), ring + 6);
}

TEST(LineView, AMirroredPipeGivesAViewEvenAcrossTheWrap) {
  auto [r, w] = make_pipe({.capacity = 4096, .mirrored = true});
  std::string const filler(4090, 'x');
  w.write(filler);
  r.consume(filler.size());
  w.write("across the wrap\n");
  auto const* ring = reinterpret_cast<char const*>(r.peek().data());
  std::string_view line;
  ASSERT_TRUE(r.read_line_view(line));
  EXPECT_EQ(line, "across the wrap");
  EXPECT_EQ(line.data(), ring);
}

TEST(LineView, TheReturnedLineStaysInTheRingUntilTheNextCall) {
  auto [r, w] = make_pipe({.capacity = 16});
  w.write("0123456789\n");
  std::string_view line;
  ASSERT_TRUE(r.read_line_view(line));
  EXPECT_EQ(r.available(), 0u);
  // The writer cannot overwrite the line: only 5 bytes are free.
  EXPECT_EQ(w.try_write_some(bytes("ABCDEFGHIJKLMNOP")), 5u);
  EXPECT_EQ(line, "0123456789");
  // Any next call frees it.
  EXPECT_EQ(r.available(), 5u);
  std::string rest(5, '\0');
  EXPECT_EQ(r.read(std::span(reinterpret_cast<std::byte*>(rest.data()), rest.size())), 5u);
  EXPECT_EQ(rest, "ABCDE");
  EXPECT_EQ(w.try_write_some(bytes("ABCDEFGHIJKLMNOP")), 16u);
}

TEST(LineView, ALineSplitAtTheWrapOfAHeapPipeIsWhole) {
  auto [r, w] = make_pipe({.capacity = 16});
  w.write("0123456789ab\n");  // 13 bytes
  std::string_view line;
  ASSERT_TRUE(r.read_line_view(line));
  r.consume(0);           // any call frees the line's bytes
  w.write("wrapping\n");  // 3 bytes before the end, 6 after
  ASSERT_TRUE(r.read_line_view(line));
  EXPECT_EQ(line, "wrapping");
}

TEST(LineView, LastLineWithoutDelimiterThenEndOfFile) {
  auto [r, w] = make_pipe();
  w.write("a\n\nlast");
  w.close();
  std::string_view line;
  ASSERT_TRUE(r.read_line_view(line));
  EXPECT_EQ(line, "a");
  ASSERT_TRUE(r.read_line_view(line));
  EXPECT_EQ(line, "");
  ASSERT_TRUE(r.read_line_view(line));
  EXPECT_EQ(line, "last");
  EXPECT_FALSE(r.read_line_view(line));
}

TEST(LineView, WriterCloseErrorComesAfterThePartialLine) {
  auto [r, w] = make_pipe();
  w.write("whole\npart");
  w.close(std::make_error_code(std::errc::connection_reset));
  std::string_view line;
  ASSERT_TRUE(r.read_line_view(line));
  std::error_code ec;
  EXPECT_FALSE(r.read_line_view(line, ec));
  EXPECT_EQ(ec, std::errc::connection_reset);
  EXPECT_EQ(line, "part");
  EXPECT_THROW(r.read_line_view(line), std::system_error);
}

TEST(LineView, CustomDelimiter) {
  auto [r, w] = make_pipe();
  w.write(std::string_view("a\0b\0", 4));
  std::string_view line;
  ASSERT_TRUE(r.read_line_view(line, '\0'));
  EXPECT_EQ(line, "a");
  ASSERT_TRUE(r.read_line_view(line, '\0'));
  EXPECT_EQ(line, "b");
}

TEST(LineView, ClosedReaderIsBadFileDescriptor) {
  auto [r, w] = make_pipe();
  r.close();
  std::string_view line;
  std::error_code ec;
  EXPECT_FALSE(r.read_line_view(line, ec));
  EXPECT_EQ(ec, std::errc::bad_file_descriptor);
}

TEST(LineView, MovedReaderKeepsItsPlace) {
  auto [r, w] = make_pipe();
  w.write("one\ntwo\n");
  std::string_view line;
  ASSERT_TRUE(r.read_line_view(line));
  userpipe::reader moved = std::move(r);
  ASSERT_TRUE(moved.read_line_view(line));
  EXPECT_EQ(line, "two");
}
