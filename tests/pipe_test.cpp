// The promises of userpipe/pipe.hpp, one test each.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <userpipe/pipe.hpp>
#include <vector>

#include "support/bytes.hpp"
#include "support/get_within.hpp"
#include "support/until.hpp"

using namespace std::chrono_literals;
using userpipe::make_pipe;

namespace {
using userpipe_support::bytes;
using userpipe_support::read_all;
using userpipe_support::text;

std::errc code_of(auto&& f) {
  try {
    f();
  } catch (std::system_error const& e) {
    return static_cast<std::errc>(e.code().value());
  }
  return std::errc{};
}

}  // namespace

TEST(MakePipe, CapacityIsRoundedUpToAPowerOfTwo) {
  auto [r, w] = make_pipe({.capacity = 1000});
  EXPECT_EQ(w.capacity(), 1024u);
  EXPECT_EQ(r.capacity(), 1024u);
  auto [r2, w2] = make_pipe();
  EXPECT_EQ(w2.capacity(), 65536u);
}

TEST(MakePipe, ZeroOrAbsurdCapacityIsInvalidArgument) {
  EXPECT_EQ(code_of([] { make_pipe({.capacity = 0}); }), std::errc::invalid_argument);
  EXPECT_EQ(code_of([] { make_pipe({.capacity = std::size_t{1} << 62}); }), std::errc::invalid_argument);
  EXPECT_EQ(code_of([] { make_pipe({.capacity = userpipe::max_capacity + 1}); }),
            std::errc::invalid_argument);
}

TEST(Pipe, BytesArriveInOrder) {
  auto [r, w] = make_pipe({.capacity = 64});
  w.write("hello, ");
  w.write(bytes("world"));
  std::string buf(12, '\0');
  EXPECT_EQ(r.read(bytes(buf)), 12u);
  EXPECT_EQ(buf, "hello, world");
}

TEST(Pipe, ReaderGetsEofAfterLastByte) {
  auto [r, w] = make_pipe();
  w.write("abc");
  w.close();
  std::string buf(8, '\0');
  EXPECT_EQ(r.read_some(bytes(buf)), 3u);
  EXPECT_EQ(buf.substr(0, 3), "abc");
  EXPECT_EQ(r.read_some(bytes(buf)), 0u);
  EXPECT_EQ(r.read_some(bytes(buf)), 0u) << "EOF is sticky";
}

TEST(Pipe, DestroyingWriterIsEof) {
  auto [r, w] = make_pipe();
  w.write("x");
  { auto gone = std::move(w); }
  EXPECT_EQ(read_all(r), "x");
}

TEST(Pipe, WriteAfterReaderDestroyedIsBrokenPipe) {
  auto [r, w] = make_pipe();
  { auto gone = std::move(r); }
  EXPECT_TRUE(w.reader_closed());
  EXPECT_EQ(code_of([&] { w.write("x"); }), std::errc::broken_pipe);
  std::error_code ec;
  EXPECT_EQ(w.write_some(bytes("x"), ec), 0u);
  EXPECT_EQ(ec, std::errc::broken_pipe);
}

TEST(Pipe, WriteAfterReaderCloseIsBrokenPipeEvenWithRoom) {
  auto [r, w] = make_pipe();
  r.close();
  EXPECT_EQ(code_of([&] { w.try_write_some(bytes("x")); }), std::errc::broken_pipe);
  EXPECT_EQ(code_of([&] { w.prepare(); }), std::errc::broken_pipe);
}

TEST(Pipe, WriterBlockedOnFullPipeWakesOnReaderClose) {
  auto [r, w] = make_pipe({.capacity = 64});
  auto result = std::async(std::launch::async, [&w] {
    std::string big(1000, 'x');
    std::error_code ec;
    std::size_t n = w.write(bytes(big), ec);
    return std::pair{n, ec};
  });
  ASSERT_TRUE(userpipe_support::wait_until_asleep(r, &userpipe::pipe_stats::writer_sleeps));
  r.close();
  auto [n, ec] = userpipe_support::get_within(result);
  EXPECT_EQ(ec, std::errc::broken_pipe);
  EXPECT_EQ(n, 64u);
}

TEST(Pipe, ReaderBlockedOnEmptyPipeWakesOnWriterClose) {
  auto [r, w] = make_pipe();
  auto result = std::async(std::launch::async, [&r] {
    std::string buf(8, '\0');
    return r.read_some(bytes(buf));
  });
  ASSERT_TRUE(userpipe_support::wait_until_asleep(w, &userpipe::pipe_stats::reader_sleeps));
  w.close();
  EXPECT_EQ(userpipe_support::get_within(result), 0u);
}

TEST(Pipe, ReaderBlockedInPeekWakesOnWriterClose) {
  auto [r, w] = make_pipe();
  auto result = std::async(std::launch::async, [&r] { return r.peek().size(); });
  ASSERT_TRUE(userpipe_support::wait_until_asleep(w, &userpipe::pipe_stats::reader_sleeps));
  w.close();
  EXPECT_EQ(userpipe_support::get_within(result), 0u);
}

TEST(Pipe, WriterBlockedInPrepareWakesOnReaderClose) {
  auto [r, w] = make_pipe({.capacity = 16});
  w.write(std::string(16, 'x'));
  auto result = std::async(std::launch::async, [&w] { return code_of([&] { w.prepare(); }); });
  ASSERT_TRUE(userpipe_support::wait_until_asleep(r, &userpipe::pipe_stats::writer_sleeps));
  r.close();
  EXPECT_EQ(userpipe_support::get_within(result), std::errc::broken_pipe);
}

TEST(Pipe, CloseWithErrorDeliversBytesThenError) {
  auto [r, w] = make_pipe();
  w.write("data");
  w.close(std::make_error_code(std::errc::connection_reset));
  std::string buf(16, '\0');
  std::error_code ec;
  EXPECT_EQ(r.read_some(bytes(buf), ec), 4u);
  EXPECT_FALSE(ec);
  EXPECT_EQ(r.read_some(bytes(buf), ec), 0u);
  EXPECT_EQ(ec, std::errc::connection_reset);
  EXPECT_EQ(code_of([&] { r.read_some(bytes(buf)); }), std::errc::connection_reset) << "the error is sticky";
  EXPECT_EQ(code_of([&] { r.peek(); }), std::errc::connection_reset);
}

TEST(Pipe, ReadOfEverythingReturnsBytesBeforeCloseError) {
  auto [r, w] = make_pipe();
  w.write("abc");
  w.close(std::make_error_code(std::errc::io_error));
  std::string buf(10, '\0');
  std::error_code ec;
  EXPECT_EQ(r.read(bytes(buf), ec), 3u);
  EXPECT_FALSE(ec);
  EXPECT_EQ(r.read(bytes(buf), ec), 0u);
  EXPECT_EQ(ec, std::errc::io_error);
}

TEST(Pipe, FirstCloseWins) {
  auto [r, w] = make_pipe();
  w.close();
  w.close(std::make_error_code(std::errc::io_error));
  std::string buf(4, '\0');
  std::error_code ec;
  EXPECT_EQ(r.read_some(bytes(buf), ec), 0u);
  EXPECT_FALSE(ec);
}

TEST(Pipe, ReaderCloseWithReasonIsWhatTheWriterGets) {
  auto [r, w] = make_pipe();
  r.close(std::make_error_code(std::errc::message_size));
  EXPECT_EQ(code_of([&] { w.write("x"); }), std::errc::message_size);
}

TEST(Pipe, MovedFromEndIsBadFileDescriptor) {
  auto [r, w] = make_pipe();
  auto r2 = std::move(r);
  auto w2 = std::move(w);
  std::string buf(4, '\0');
  EXPECT_EQ(code_of([&] { w.write("x"); }), std::errc::bad_file_descriptor);
  EXPECT_EQ(code_of([&] { w.prepare(); }), std::errc::bad_file_descriptor);
  EXPECT_EQ(code_of([&] { w.commit(0); }), std::errc::bad_file_descriptor);
  EXPECT_EQ(code_of([&] { r.read_some(bytes(buf)); }), std::errc::bad_file_descriptor);
  EXPECT_EQ(code_of([&] { r.peek(); }), std::errc::bad_file_descriptor);
  EXPECT_EQ(code_of([&] { r.consume(0); }), std::errc::bad_file_descriptor);
  EXPECT_FALSE(r.is_open());
  EXPECT_FALSE(w.is_open());
  r.close();  // harmless
  w2.write("y");
  EXPECT_EQ(r2.read_some(bytes(buf)), 1u);
}

TEST(Pipe, DefaultConstructedEndIsBadFileDescriptor) {
  userpipe::writer w;
  userpipe::reader r;
  std::string buf(1, '\0');
  EXPECT_EQ(code_of([&] { w.write("x"); }), std::errc::bad_file_descriptor);
  EXPECT_EQ(code_of([&] { r.read_some(bytes(buf)); }), std::errc::bad_file_descriptor);
}

TEST(Pipe, OwnClosedEndIsBadFileDescriptor) {
  auto [r, w] = make_pipe();
  w.close();
  r.close();
  std::string buf(1, '\0');
  EXPECT_EQ(code_of([&] { w.write("x"); }), std::errc::bad_file_descriptor);
  EXPECT_EQ(code_of([&] { r.read_some(bytes(buf)); }), std::errc::bad_file_descriptor);
}

TEST(Pipe, MoveAssignmentClosesTheOldEnd) {
  auto [r1, w1] = make_pipe();
  auto [r2, w2] = make_pipe();
  w1 = std::move(w2);  // the first pipe's writer is closed by this
  std::string buf(1, '\0');
  EXPECT_EQ(r1.read_some(bytes(buf)), 0u);
  w1.write("z");
  EXPECT_EQ(r2.read_some(bytes(buf)), 1u);
}

TEST(Pipe, WriteLargerThanCapacityStreamsThrough) {
  auto [r, w] = make_pipe({.capacity = 64});
  std::string big(100000, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7);
  std::thread t([&w, &big] {
    w.write(big);
    w.close();
  });
  EXPECT_EQ(read_all(r), big);
  t.join();
}

TEST(Pipe, ReadFillsTheBufferAcrossManyWrites) {
  auto [r, w] = make_pipe({.capacity = 8});
  std::thread t([&w] {
    for (char c = 'a'; c <= 'z'; ++c) w.write(std::string(1, c));
  });
  std::string buf(26, '\0');
  EXPECT_EQ(r.read(bytes(buf)), 26u);
  EXPECT_EQ(buf, "abcdefghijklmnopqrstuvwxyz");
  t.join();
}

TEST(Pipe, ReadStopsShortAtEof) {
  auto [r, w] = make_pipe();
  w.write("abc");
  w.close();
  std::string buf(10, '\0');
  EXPECT_EQ(r.read(bytes(buf)), 3u);
}

// Linux pipe_write returns 0 for zero bytes before it looks for a reader:
// no EPIPE. A process that writes "" after its child exited must not fail.
TEST(Pipe, EmptyWriteAfterReaderCloseIsNoError) {
  auto [r, w] = make_pipe();
  r.close();
  std::error_code ec;
  EXPECT_NO_THROW(w.write(std::string_view{}));
  EXPECT_EQ(w.write(std::span<std::byte const>{}, ec), 0u);
  EXPECT_FALSE(ec);
  EXPECT_EQ(w.write_some(std::span<std::byte const>{}, ec), 0u);
  EXPECT_FALSE(ec);
  EXPECT_EQ(w.try_write_some(std::span<std::byte const>{}, ec), 0u);
  EXPECT_FALSE(ec);
  EXPECT_EQ(w.write_for(std::span<std::byte const>{}, 1ms, ec), 0u);
  EXPECT_FALSE(ec);
  w.write_message(std::span<std::byte const>{}, ec);
  EXPECT_FALSE(ec);
  w.write("x", ec);
  EXPECT_EQ(ec, std::errc::broken_pipe) << "a byte still finds the reader gone";
  w.close();
  w.write(std::span<std::byte const>{}, ec);
  EXPECT_EQ(ec, std::errc::bad_file_descriptor) << "the own end's state comes first, as EBADF does";
}

TEST(Pipe, EmptyBuffersCompleteAtOnce) {
  auto [r, w] = make_pipe();
  EXPECT_EQ(r.read_some(std::span<std::byte>{}), 0u);
  EXPECT_EQ(w.write_some(std::span<std::byte const>{}), 0u);
  w.write(std::span<std::byte const>{});
  EXPECT_EQ(r.available(), 0u);
}

// Reads that drain a little twice in a row make the next one gather
// (detail::stream_gather) before it looks: every form must still return
// every byte, stop at EOF, and time out on an empty pipe.
TEST(Gather, AStreakOfSmallReadsLosesNothingAndStillEndsAtEofOrTimeout) {
  auto [r, w] = make_pipe();
  std::string buf(100, '\0'), got;
  std::error_code ec;
  for (char c = 'a'; c <= 'z'; ++c) {
    w.write(std::string(1, c));
    std::size_t n = 0;
    switch (c % 3) {
      case 0:
        n = r.read_some(bytes(buf));
        break;
      case 1:
        n = r.read_some(bytes(buf), ec);
        break;
      default:
        n = r.read_some_for(bytes(buf), 1s);
        break;
    }
    ASSERT_EQ(n, 1u) << c;
    EXPECT_FALSE(ec);
    got.append(buf, 0, n);
  }
  EXPECT_EQ(got, "abcdefghijklmnopqrstuvwxyz");
  EXPECT_EQ(r.read_some_for(bytes(buf), 1ms, ec), 0u);
  EXPECT_EQ(ec, std::errc::timed_out) << "a streak does not turn an empty pipe into data";
  w.write("xy");
  EXPECT_EQ(r.read_some(bytes(buf)), 2u);
  w.write("z");
  EXPECT_EQ(r.read_some(bytes(buf)), 1u);
  w.close();
  EXPECT_EQ(r.read_some(bytes(buf)), 0u) << "EOF after a streak";
  EXPECT_EQ(r.read_some(bytes(buf), ec), 0u);
  EXPECT_FALSE(ec);
}

TEST(TryCalls, TryReadOnEmptyPipeWouldBlockAndEofIsZero) {
  auto [r, w] = make_pipe();
  std::string buf(4, '\0');
  std::error_code ec;
  EXPECT_EQ(r.try_read_some(bytes(buf), ec), 0u);
  EXPECT_EQ(ec, std::errc::resource_unavailable_try_again);
  EXPECT_EQ(code_of([&] { r.try_read_some(bytes(buf)); }), std::errc::resource_unavailable_try_again);
  w.write("ab");
  EXPECT_EQ(r.try_read_some(bytes(buf), ec), 2u);
  EXPECT_FALSE(ec);
  w.close();
  EXPECT_EQ(r.try_read_some(bytes(buf), ec), 0u);
  EXPECT_FALSE(ec) << "0 without error is EOF";
}

TEST(TryCalls, TryWriteOnFullPipeWouldBlockAndWritesWhatFits) {
  auto [r, w] = make_pipe({.capacity = 4});
  std::error_code ec;
  EXPECT_EQ(w.try_write_some(bytes("abcdef"), ec), 4u);
  EXPECT_FALSE(ec);
  EXPECT_EQ(w.try_write_some(bytes("g"), ec), 0u);
  EXPECT_EQ(ec, std::errc::resource_unavailable_try_again);
  EXPECT_EQ(code_of([&] { w.try_write_some(bytes("g")); }), std::errc::resource_unavailable_try_again);
}

TEST(TryCalls, OneThreadCanDriveBothEnds) {
  // A ring smaller than the message, so both calls must make progress in
  // turn: what arrives is the whole message, not merely what was sent.
  auto [r, w] = make_pipe({.capacity = 16});
  std::string message;
  for (int i = 0; i < 1000; ++i) message += std::to_string(i) + ",";
  std::string got, buf(5, '\0');
  std::string_view rest = message;
  std::error_code ec;
  for (int round = 0; got.size() < message.size() && round < 100000; ++round) {
    rest.remove_prefix(w.try_write_some(bytes(rest), ec));
    got.append(buf, 0, r.try_read_some(bytes(buf), ec));
  }
  EXPECT_EQ(got, message);
}

TEST(Timed, ReadSomeForTimesOutAndLosesNothing) {
  auto [r, w] = make_pipe();
  std::string buf(4, '\0');
  std::error_code ec;
  EXPECT_EQ(r.read_some_for(bytes(buf), 10ms, ec), 0u);
  EXPECT_EQ(ec, std::errc::timed_out);
  EXPECT_EQ(code_of([&] { r.read_some_for(bytes(buf), 1ms); }), std::errc::timed_out);
  w.write("ok");
  EXPECT_EQ(r.read_some_for(bytes(buf), 10s, ec), 2u);
  EXPECT_FALSE(ec);
}

TEST(Timed, WriteForTimesOutOnlyIfNothingWasWritten) {
  auto [r, w] = make_pipe({.capacity = 8});
  std::error_code ec;
  EXPECT_EQ(w.write_for(bytes("0123456789"), 10ms, ec), 8u) << "partial progress is returned, not an error";
  EXPECT_FALSE(ec);
  EXPECT_EQ(w.write_for(bytes("x"), 10ms, ec), 0u);
  EXPECT_EQ(ec, std::errc::timed_out);
  EXPECT_EQ(code_of([&] { (void)w.write_for(bytes("x"), 0ms); }), std::errc::timed_out);
  std::string buf(16, '\0');
  EXPECT_EQ(r.read_some(bytes(buf)), 8u);
  EXPECT_EQ(buf.substr(0, 8), "01234567") << "what write_for returned is in the pipe";
  EXPECT_EQ(r.available(), 0u);
}

TEST(Timed, WriteForReturnsItsPartialCountAndTheNextCallTheBrokenPipe) {
  // write_for's promise: whatever it returns is in the pipe, and an error is
  // reported only by a call that moved nothing. A reader that leaves after
  // some bytes therefore shows up in the next call.
  auto [r, w] = make_pipe({.capacity = 8});
  std::error_code ec;
  auto closer = std::async(std::launch::async, [&r = r] {
    EXPECT_TRUE(userpipe_support::wait_until_asleep(r, &userpipe::pipe_stats::writer_sleeps));
    r.close();
  });
  EXPECT_EQ(w.write_for(bytes("0123456789abcdef"), 60s, ec), 8u);
  EXPECT_FALSE(ec) << ec.message();
  closer.get();
  EXPECT_EQ(w.write_for(bytes("x"), 60s, ec), 0u);
  EXPECT_EQ(ec, std::errc::broken_pipe);
}

TEST(Timed, ZeroNegativeAndHugeTimeoutsAreFine) {
  auto [r, w] = make_pipe();
  std::string buf(4, '\0');
  std::error_code ec;
  EXPECT_EQ(r.read_some_for(bytes(buf), -5s, ec), 0u);
  EXPECT_EQ(ec, std::errc::timed_out);
  w.write("x");
  EXPECT_EQ(r.read_some_for(bytes(buf), std::chrono::hours::max(), ec), 1u) << "no overflow";
  EXPECT_FALSE(ec);
  EXPECT_EQ(w.write_for(bytes("y"), std::chrono::hours::max(), ec), 1u);
}

TEST(ZeroCopy, PrepareCommitPeekConsume) {
  auto [r, w] = make_pipe({.capacity = 16});
  auto span = w.prepare();
  ASSERT_EQ(span.size(), 16u);
  std::memcpy(span.data(), "hello", 5);
  w.commit(5);
  auto data = r.peek();
  EXPECT_EQ(text(data), "hello");
  r.consume(2);
  EXPECT_EQ(text(r.peek()), "llo");
  r.consume(3);
  EXPECT_EQ(r.available(), 0u);
}

TEST(ZeroCopy, SpansStopAtTheWrapAndTheRestFollows) {
  auto [r, w] = make_pipe({.capacity = 8});
  w.write("123456");
  std::string buf(6, '\0');
  r.read(bytes(buf));
  auto span = w.prepare();
  EXPECT_EQ(span.size(), 2u) << "contiguous up to the end of the ring";
  std::memcpy(span.data(), "ab", 2);
  w.commit(2);
  span = w.prepare();
  EXPECT_EQ(span.size(), 6u);
  std::memcpy(span.data(), "cd", 2);
  w.commit(2);
  EXPECT_EQ(text(r.peek()), "ab");
  r.consume(2);
  EXPECT_EQ(text(r.peek()), "cd");
}

TEST(ZeroCopy, CommitOrConsumeTooMuchIsInvalidArgumentAndChangesNothing) {
  auto [r, w] = make_pipe({.capacity = 8});
  EXPECT_EQ(code_of([&] { w.commit(9); }), std::errc::invalid_argument);
  w.write("abc");
  EXPECT_EQ(code_of([&] { r.consume(4); }), std::errc::invalid_argument);
  EXPECT_EQ(r.available(), 3u);
  EXPECT_EQ(code_of([&] { w.commit(6); }), std::errc::invalid_argument);
  EXPECT_EQ(code_of([&] { w.prepare(0); }), std::errc::invalid_argument);
  EXPECT_EQ(code_of([&] { w.prepare(9); }), std::errc::invalid_argument);
  std::string buf(8, '\0');
  EXPECT_EQ(r.read_some(bytes(buf)), 3u);
  EXPECT_EQ(buf.substr(0, 3), "abc");
}

TEST(ZeroCopy, PrepareWaitsForMinSize) {
  auto [r, w] = make_pipe({.capacity = 16});
  w.write(std::string(12, 'x'));
  auto result = std::async(std::launch::async, [&w] { return w.prepare(8).size(); });
  std::string buf(2, '\0');
  r.read(bytes(buf));  // 6 free: not yet enough
  ASSERT_TRUE(userpipe_support::wait_until_asleep(r, &userpipe::pipe_stats::writer_sleeps));
  EXPECT_EQ(result.wait_for(0s), std::future_status::timeout);
  r.read(bytes(buf));           // 8 free
  EXPECT_EQ(result.get(), 4u);  // 8 free, but only the 4 up to the wrap are contiguous
}

TEST(ZeroCopy, TryPeekTellsWouldBlockFromEof) {
  auto [r, w] = make_pipe();
  std::error_code ec;
  EXPECT_TRUE(r.try_peek(ec).empty());
  EXPECT_EQ(ec, std::errc::resource_unavailable_try_again);
  w.close();
  EXPECT_TRUE(r.try_peek(ec).empty());
  EXPECT_FALSE(ec);
}

TEST(Lines, ReadLineLikeGetline) {
  auto [r, w] = make_pipe({.capacity = 8});
  std::thread t([&w] {
    w.write("first line\n\nthird, straddling the wrap several times\nlast without newline");
    w.close();
  });
  std::string line;
  std::vector<std::string> lines;
  while (r.read_line(line)) lines.push_back(line);
  t.join();
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], "first line");
  EXPECT_EQ(lines[1], "");
  EXPECT_EQ(lines[2], "third, straddling the wrap several times");
  EXPECT_EQ(lines[3], "last without newline");
  EXPECT_FALSE(r.read_line(line));
  EXPECT_TRUE(line.empty());
}

TEST(Lines, CustomDelimiter) {
  auto [r, w] = make_pipe();
  w.write(std::string_view("a\0b\0", 4));
  w.close();
  std::string line;
  ASSERT_TRUE(r.read_line(line, '\0'));
  EXPECT_EQ(line, "a");
  ASSERT_TRUE(r.read_line(line, '\0'));
  EXPECT_EQ(line, "b");
  EXPECT_FALSE(r.read_line(line, '\0'));
}

TEST(Lines, PartialLineBeforeCloseErrorIsReportedAsError) {
  auto [r, w] = make_pipe();
  w.write("complete\npartial");
  w.close(std::make_error_code(std::errc::io_error));
  std::string line;
  ASSERT_TRUE(r.read_line(line));
  EXPECT_EQ(line, "complete");
  std::error_code ec;
  EXPECT_FALSE(r.read_line(line, ec));
  EXPECT_EQ(ec, std::errc::io_error);
  EXPECT_EQ(line, "partial");
}

TEST(Stats, CountBytesWaitsAndWakes) {
  auto [r, w] = make_pipe({.capacity = 16});
  w.write("0123456789");
  std::string buf(4, '\0');
  r.read(bytes(buf));
  auto s = r.stats();
  EXPECT_EQ(s.bytes_written, 10u);
  EXPECT_EQ(s.bytes_read, 4u);
  EXPECT_EQ(s.writer_waits, 0u);
  EXPECT_EQ(s.reader_waits, 0u);

  // A reader that sleeps on an empty pipe is woken by a write.
  auto [r2, w2] = make_pipe();
  auto result = std::async(std::launch::async, [&r2] {
    std::string b(1, '\0');
    return r2.read_some(bytes(b));
  });
  while (w2.stats().reader_sleeps == 0) std::this_thread::sleep_for(1ms);
  w2.write("x");
  EXPECT_EQ(result.get(), 1u);
  auto s2 = w2.stats();
  EXPECT_EQ(s2.reader_waits, 1u);
  EXPECT_GE(s2.reader_sleeps, 1u) << "more only if the futex woke it spuriously";
  EXPECT_EQ(s2.wakes, 1u);
  EXPECT_EQ(s2.writer_waits, 0u);
  EXPECT_EQ(userpipe::stats(w2).bytes_read, 1u);
}

TEST(Stats, CountTheYieldsOfAWaitAsSystemCalls) {
  // A wait that finds no data spins, then yields the CPU (each a
  // sched_yield), then sleeps: "no system call" must count the yields too.
  auto [r, w] = make_pipe();
  std::string buf(1, '\0');
  std::error_code ec;
  EXPECT_EQ(r.read_some_for(bytes(buf), 10ms, ec), 0u);
  EXPECT_EQ(ec, std::errc::timed_out);
  auto s = w.stats();
  EXPECT_EQ(s.reader_waits, 1u);
  EXPECT_EQ(s.reader_yields, static_cast<std::uint64_t>(userpipe::detail::yield_rounds));
  EXPECT_EQ(s.writer_yields, 0u);
}

TEST(Stats, SurviveClose) {
  auto [r, w] = make_pipe();
  w.write("abc");
  w.close();
  EXPECT_EQ(w.stats().bytes_written, 3u);
}

// ---- the event-loop hook ------------------------------------------------------

namespace {
struct flag {
  std::atomic<int> calls{0};
  static void fire(void* self) noexcept { static_cast<flag*>(self)->calls.fetch_add(1); }
};
}  // namespace

TEST(Park, ReaderParkFiresOnCommit) {
  auto [r, w] = make_pipe();
  flag f;
  ASSERT_TRUE(r.park(1, &flag::fire, &f));
  EXPECT_EQ(f.calls, 0);
  w.write("x");
  EXPECT_EQ(f.calls, 1);
  w.write("y");
  EXPECT_EQ(f.calls, 1) << "once";
}

TEST(Park, ParkReturnsFalseWhenAlreadyReady) {
  auto [r, w] = make_pipe({.capacity = 4});
  flag f;
  w.write("x");
  EXPECT_FALSE(r.park(1, &flag::fire, &f));
  EXPECT_TRUE(w.park(1, &flag::fire, &f) == false) << "room for 1 byte";
  w.write("yzw");
  EXPECT_TRUE(w.park(1, &flag::fire, &f));
  std::string buf(1, '\0');
  r.read_some(bytes(buf));
  EXPECT_EQ(f.calls, 1);
}

TEST(Park, UnparkWithdraws) {
  auto [r, w] = make_pipe();
  flag f;
  ASSERT_TRUE(r.park(1, &flag::fire, &f));
  EXPECT_TRUE(r.unpark());
  w.write("x");
  EXPECT_EQ(f.calls, 0);
  EXPECT_FALSE(r.unpark());
}

TEST(Park, PeerCloseFiresPark) {
  auto [r, w] = make_pipe({.capacity = 2});
  flag fr, fw;
  ASSERT_TRUE(r.park(1, &flag::fire, &fr));
  w.close();
  EXPECT_EQ(fr.calls, 1);
  EXPECT_FALSE(r.park(1, &flag::fire, &fr)) << "EOF is ready";

  auto [r2, w2] = make_pipe({.capacity = 2});
  w2.write("ab");
  ASSERT_TRUE(w2.park(1, &flag::fire, &fw));
  r2.close();
  EXPECT_EQ(fw.calls, 1);
}

TEST(Park, OwnCloseFiresPark) {
  auto [r, w] = make_pipe();
  flag f;
  ASSERT_TRUE(r.park(1, &flag::fire, &f));
  r.close();
  EXPECT_EQ(f.calls, 1) << "nothing stays parked on a closed end";
}

TEST(Park, WriterParkWaitsForWant) {
  auto [r, w] = make_pipe({.capacity = 8});
  w.write("12345678");
  flag f;
  ASSERT_TRUE(w.park(4, &flag::fire, &f));
  std::string buf(3, '\0');
  r.read(bytes(buf));
  EXPECT_EQ(f.calls, 0);
  r.read(std::span(bytes(buf)).first(1));
  EXPECT_EQ(f.calls, 1);
}

// Found writing the fuzzer's reference model: the ends cache the other side's index, and peek()
// and try_prepare() used to trust a cache that still covered one byte.
TEST(ZeroCopy, PeekSeesEveryByteWrittenBeforeIt) {
  auto [r, w] = make_pipe({.capacity = 64});
  w.write("a");
  EXPECT_EQ(r.peek().size(), 1u);
  w.write("bcdef");
  EXPECT_EQ(text(r.peek()), "abcdef") << "a parser peeking for a whole message must see it";
}

TEST(ZeroCopy, TryPrepareSeesEveryFreeByte) {
  auto [r, w] = make_pipe({.capacity = 64});
  std::error_code ec;
  w.write(std::string(60, 'x'));
  EXPECT_EQ(w.try_prepare(ec).size(), 4u);
  std::string buf(30, '\0');
  r.read(bytes(buf));
  EXPECT_EQ(w.try_prepare(ec).size(), 4u) << "contiguous to the end of the ring";
  w.commit(4);
  EXPECT_EQ(w.try_prepare(ec).size(), 30u) << "the room the reader freed at the start";
}

TEST(Batched, WaitsUntilMinSizeIsReadable) {
  auto [r, w] = make_pipe();
  w.write("0123456789");
  auto result = std::async(std::launch::async, [&r] {
    std::string buf(64, '\0');
    return r.read_some_batched(bytes(buf), 20, 1h);
  });
  EXPECT_EQ(result.wait_for(20ms), std::future_status::timeout);
  w.write("abcdefghij");
  EXPECT_EQ(result.get(), 20u);
}

TEST(Batched, AfterGatherReturnsWhatThereIs) {
  auto [r, w] = make_pipe();
  w.write("abc");
  std::string buf(64, '\0');
  EXPECT_EQ(r.read_some_batched(bytes(buf), 50, 5ms), 3u);
  EXPECT_EQ(buf.substr(0, 3), "abc");
}

TEST(Batched, WriterCloseEndsTheGatherAndEofFollows) {
  auto [r, w] = make_pipe();
  w.write("abc");
  w.close();
  std::string buf(64, '\0');
  EXPECT_EQ(r.read_some_batched(bytes(buf), 50, 1h), 3u);
  EXPECT_EQ(r.read_some_batched(bytes(buf), 50, 1h), 0u);
}

TEST(Batched, NeverWaitsForMoreThanHalfTheRing) {
  auto [r, w] = make_pipe({.capacity = 16});
  w.write(std::string(8, 'x'));
  std::string buf(64, '\0');
  EXPECT_EQ(r.read_some_batched(bytes(buf), 1000, 1h), 8u) << "a full writer could never add more";
  EXPECT_EQ(r.read_some_batched(std::span<std::byte>{}, 1, 1h), 0u);
}

// prepare(n) with n over half the ring can wait for room while fewer bytes
// than a gather asks for are readable: the gather must end then, not at
// its deadline (an hour here: a hang is what ctest's timeout reports).
TEST(Batched, GatherEndsWhenTheWriterWaitsForRoom) {
  auto [r, w] = make_pipe({.capacity = 4096});
  w.write(std::string(100, 'a'));
  std::size_t committed = 0;
  std::thread writer([&w, &committed] {
    auto span = w.prepare(4000);  // contiguous: may stop at the wrap
    std::memset(span.data(), 'b', span.size());
    w.commit(committed = span.size());
    w.close();
  });
  std::string buf(4096, '\0'), got;
  // The first gather ends with the 100 bytes (and whatever the writer adds
  // once they are taken, in the same call).
  while (std::size_t n = r.read_some_batched(bytes(buf), 4096, 1h)) got.append(buf, 0, n);
  writer.join();
  EXPECT_EQ(got, std::string(100, 'a') + std::string(committed, 'b'));
}

TEST(Batched, GatherAlreadyAsleepEndsWhenTheWriterWaitsForRoom) {
  auto [r, w] = make_pipe({.capacity = 4096});
  w.write(std::string(100, 'a'));
  auto gathered = std::async(std::launch::async, [&r] {
    std::string buf(4096, '\0');
    std::size_t const n = r.read_some_batched(bytes(buf), 4096, 1h);
    return buf.substr(0, n);
  });
  // The reader has counted its wait: it gathers (or sleeps) before the
  // writer asks for more room than it can get.
  while (w.stats().reader_waits == 0) std::this_thread::yield();
  std::size_t committed = 0;
  std::thread writer([&w, &committed] {
    auto span = w.prepare(4000);
    std::memset(span.data(), 'b', span.size());
    w.commit(committed = span.size());
    w.close();
  });
  std::string got = gathered.get();
  EXPECT_EQ(got.substr(0, 100), std::string(100, 'a'));
  std::string buf(4096, '\0');
  while (std::size_t n = r.read_some(bytes(buf))) got.append(buf, 0, n);
  writer.join();
  EXPECT_EQ(got, std::string(100, 'a') + std::string(committed, 'b'));
}

TEST(FastPath, NoMembarrierEnvironmentForcesTheSymmetricPublish) {
  // ctest runs pipe_test and stress_test once in each mode; this says which.
  char const* off = std::getenv("USERPIPE_NO_MEMBARRIER");
  auto const mode = userpipe::detail::process_fence_mode();
  if (off != nullptr && std::string(off) != "0")
    EXPECT_EQ(mode, userpipe::detail::fence_mode::symmetric);
  else
    EXPECT_EQ(mode, userpipe::detail::fence_mode::asymmetric) << "membarrier is available on Linux >= 4.14";
}

namespace {
struct slow_fn {
  std::atomic<bool> entered{false}, left{false};
  static void fire(void* self) noexcept {
    auto* s = static_cast<slow_fn*>(self);
    s->entered = true;
    std::this_thread::sleep_for(20ms);
    s->left = true;
  }
};
}  // namespace

TEST(Park, UnparkOfANewParkWaitsForTheOldFnStillRunning) {
  // What fn posts may run on the owner's thread before fn returns, and park
  // again; withdrawing that new park must still not return under the old fn.
  auto [r, w] = make_pipe();
  slow_fn s;
  flag f;
  ASSERT_TRUE(r.park(1, &slow_fn::fire, &s));
  std::thread peer([&] { w.write("x"); });
  while (!s.entered) std::this_thread::yield();
  std::string buf(1, '\0');
  ASSERT_EQ(r.read_some(bytes(buf)), 1u);
  EXPECT_TRUE(r.park(1, &flag::fire, &f));
  EXPECT_TRUE(r.unpark());
  EXPECT_TRUE(s.left);
  peer.join();
}

TEST(Park, CloseWaitsForAPeerInsideFn) {
  auto [r, w] = make_pipe();
  slow_fn s;
  ASSERT_TRUE(r.park(1, &slow_fn::fire, &s));
  std::thread peer([&] { w.write("x"); });
  while (!s.entered) std::this_thread::yield();
  r.close();
  EXPECT_TRUE(s.left);
  peer.join();
}

TEST(Park, UnparkAfterWakerTookItReturnsOnlyOnceFnHasReturned) {
  // An event loop tearing down frees what fn touches once unpark() returns;
  // a peer thread must not still be inside fn then.
  auto [r, w] = make_pipe();
  slow_fn s;
  ASSERT_TRUE(r.park(1, &slow_fn::fire, &s));
  std::thread peer([&] { w.write("x"); });
  while (!s.entered) std::this_thread::yield();
  EXPECT_FALSE(r.unpark());
  EXPECT_TRUE(s.left);
  peer.join();
}
