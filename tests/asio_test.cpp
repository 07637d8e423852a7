// The promises of userpipe/asio.hpp, one test each.
#include <gtest/gtest.h>

#include <array>
#include <asio/bind_allocator.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/io_context.hpp>
#include <asio/read.hpp>
#include <asio/read_until.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <asio/write.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <userpipe/asio.hpp>
#include <vector>

using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using asio::awaitable;
using asio::use_awaitable;
using userpipe::async_reader;
using userpipe::async_writer;
using userpipe::make_pipe;

namespace {

/// co_spawn's completion: a coroutine that throws fails the test (the
/// exception leaves io.run()) instead of vanishing as with asio::detached.
auto const rethrow = [](std::exception_ptr e, auto&&...) {
  if (e) std::rethrow_exception(e);
};

struct result {
  std::error_code ec;
  std::size_t n = 0;
  bool done = false;
};

auto recorder(result& r) {
  return [&r](std::error_code ec, std::size_t n) {
    r.ec = ec;
    r.n = n;
    r.done = true;
  };
}

/// Megabytes for the volume tests: USERPIPE_ASIO_MIB, else 1024 in an
/// optimised build and 64 otherwise.
std::uint64_t volume_bytes() {
  if (char const* env = std::getenv("USERPIPE_ASIO_MIB")) return std::strtoull(env, nullptr, 10) << 20;
#ifdef NDEBUG
  return std::uint64_t{1024} << 20;
#else
  return std::uint64_t{64} << 20;
#endif
}

/// A deterministic byte stream and its running checksum (FNV-1a over the
/// positions' pattern), so that order and completeness are both checked.
struct pattern {
  std::uint64_t offset = 0;
  void fill(std::span<char> out) {
    for (char& c : out) c = static_cast<char>((offset * 131 + (offset >> 12)) & 0xff), ++offset;
  }
};
struct checksum {
  std::uint64_t h = 1469598103934665603ull;
  void add(std::span<char const> in) {
    for (char c : in) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  }
};

}  // namespace

// ---- every completion token -------------------------------------------------

TEST(AsioTokens, CallbackGetsBytes) {
  asio::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  w.write("hello");
  std::string buf(16, '\0');
  result got;
  in.async_read_some(asio::buffer(buf), recorder(got));
  EXPECT_FALSE(got.done) << "never inside the initiating call";
  io.run();
  ASSERT_TRUE(got.done);
  EXPECT_FALSE(got.ec);
  EXPECT_EQ(buf.substr(0, got.n), "hello");
}

TEST(AsioTokens, UseAwaitableWaitsForData) {
  asio::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  async_writer out(io, std::move(w));
  std::string got;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        std::string buf(16, '\0');
        std::size_t n = co_await in.async_read_some(asio::buffer(buf), use_awaitable);
        got.assign(buf, 0, n);
      },
      rethrow);
  asio::co_spawn(
      io, [&]() -> awaitable<void> { co_await asio::async_write(out, asio::buffer("ping", 4), use_awaitable); },
      rethrow);
  io.run();
  EXPECT_EQ(got, "ping");
}

TEST(AsioTokens, DeferredRunsWhenInvoked) {
  asio::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  std::string buf(8, '\0');
  auto op = in.async_read_some(asio::buffer(buf), asio::experimental::deferred);
  w.write("abc");
  result got;
  std::move(op)(recorder(got));
  io.run();
  EXPECT_FALSE(got.ec);
  EXPECT_EQ(buf.substr(0, got.n), "abc");
}

TEST(AsioTokens, UseFutureCompletesFromAnotherThread) {
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  std::string buf(8, '\0');
  std::future<std::size_t> n = in.async_read_some(asio::buffer(buf), asio::use_future);
  w.write("xyz");
  EXPECT_EQ(n.get(), 3u);
  EXPECT_EQ(buf.substr(0, 3), "xyz");
  // The error as a value: an exception crossing threads through a future
  // trips ThreadSanitizer inside the uninstrumented libstdc++.
  auto eof = in.async_read_some(
      asio::buffer(buf), asio::use_future([](std::error_code e, std::size_t n) { return std::pair(e, n); }));
  w.close();
  auto [ec, zero] = eof.get();
  EXPECT_EQ(ec, asio::error::eof);
  EXPECT_EQ(zero, 0u);
  guard.reset();
  runner.join();
}

TEST(AsioTokens, AsTupleReportsErrorsAsValues) {
  asio::io_context io;
  auto [r, w] = make_pipe();
  async_writer out(io, std::move(w));
  r.close();
  std::error_code ec;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        auto [e, n] =
            co_await out.async_write_some(asio::buffer("x", 1), asio::experimental::as_tuple(use_awaitable));
        ec = e;
        EXPECT_EQ(n, 0u);
      },
      rethrow);
  io.run();
  EXPECT_EQ(ec, asio::error::broken_pipe) << "as Asio's own sockets report it";
}

TEST(AsioTokens, DefaultTokenViaAsDefaultOn) {
  using awaitable_reader = asio::use_awaitable_t<>::as_default_on_t<async_reader>;
  using awaitable_writer = asio::use_awaitable_t<>::as_default_on_t<async_writer>;
  asio::io_context io;
  auto [r, w] = make_pipe();
  std::string got;
  asio::co_spawn(
      io,
      [&, in = awaitable_reader(io.get_executor(), std::move(r)),
       out = awaitable_writer(io.get_executor(), std::move(w))]() mutable -> awaitable<void> {
        co_await out.async_write_some(asio::buffer("ok", 2));
        std::string buf(2, '\0');
        std::size_t n = co_await in.async_read_some(asio::buffer(buf));
        got.assign(buf, 0, n);
      },
      rethrow);
  io.run();
  EXPECT_EQ(got, "ok");
}

// ---- completions ---------------------------------------------------------------

TEST(AsioStream, ZeroSizeReadCompletesAtOnceOnAnEmptyPipe) {
  asio::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  result got;
  in.async_read_some(asio::mutable_buffer(), recorder(got));
  EXPECT_FALSE(got.done);
  io.run();  // would not return if the read had parked
  ASSERT_TRUE(got.done);
  EXPECT_FALSE(got.ec);
  EXPECT_EQ(got.n, 0u);
}

TEST(AsioStream, ZeroSizeWriteCompletesAtOnceOnAFullPipe) {
  asio::io_context io;
  auto [r, w] = make_pipe({.capacity = 4});
  w.write("full");
  async_writer out(io, std::move(w));
  result got;
  out.async_write_some(asio::const_buffer(), recorder(got));
  io.run();
  ASSERT_TRUE(got.done);
  EXPECT_FALSE(got.ec);
}

TEST(AsioStream, ReaderGetsEofAfterLastByte) {
  asio::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  w.write("tail");
  w.close();
  std::string all;
  std::error_code ec;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        std::string buf(3, '\0');
        for (;;) {
          auto [e, n] =
              co_await in.async_read_some(asio::buffer(buf), asio::experimental::as_tuple(use_awaitable));
          all.append(buf, 0, n);
          if (e) {
            ec = e;
            co_return;
          }
        }
      },
      rethrow);
  io.run();
  EXPECT_EQ(all, "tail");
  EXPECT_EQ(ec, asio::error::eof);
}

TEST(AsioStream, WriterCloseReasonReachesAsyncReader) {
  asio::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  std::string buf(4, '\0');
  result got;
  in.async_read_some(asio::buffer(buf), recorder(got));
  w.close(std::make_error_code(std::errc::connection_reset));
  io.run();
  EXPECT_EQ(got.ec, std::errc::connection_reset);
}

TEST(AsioStream, ParkedWriteGetsBrokenPipeWhenReaderCloses) {
  asio::io_context io;
  auto [r, w] = make_pipe({.capacity = 4});
  async_writer out(io, std::move(w));
  result got;
  asio::async_write(out, asio::buffer("0123456789", 10), recorder(got));
  io.poll();
  EXPECT_FALSE(got.done) << "parked on a full pipe";
  r.close();
  io.run();
  EXPECT_EQ(got.ec, asio::error::broken_pipe);
  EXPECT_EQ(got.n, 4u) << "async_write reports what went in before";
}

TEST(AsioStream, ReadOnClosedStreamIsBadDescriptor) {
  asio::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  in.close();
  EXPECT_FALSE(in.is_open());
  std::string buf(4, '\0');
  result got;
  in.async_read_some(asio::buffer(buf), recorder(got));
  io.run();
  EXPECT_EQ(got.ec, asio::error::bad_descriptor);
}

TEST(AsioStream, ReadOnMovedFromStreamIsBadDescriptor) {
  asio::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  async_reader moved(std::move(in));
  EXPECT_FALSE(in.is_open());
  std::string buf(4, '\0');
  result got;
  in.async_read_some(asio::buffer(buf), recorder(got));
  io.run();
  ASSERT_TRUE(got.done);
  EXPECT_EQ(got.ec, asio::error::bad_descriptor);
  EXPECT_EQ(got.n, 0u);
  EXPECT_TRUE(moved.is_open()) << "the operation did not touch the stream the end moved to";
}

TEST(AsioStream, WriteOnMovedFromStreamIsBadDescriptor) {
  asio::io_context io;
  auto [r, w] = make_pipe();
  async_writer out(io, std::move(w));
  async_writer moved(io, userpipe::writer{});
  moved = std::move(out);
  std::string const data = "abcd";
  result got;
  out.async_write_some(asio::buffer(data), recorder(got));
  io.run();
  ASSERT_TRUE(got.done);
  EXPECT_EQ(got.ec, asio::error::bad_descriptor);
  EXPECT_EQ(got.n, 0u);
  EXPECT_EQ(r.stats().bytes_written, 0u);
}

TEST(AsioStream, MovedFromStreamKeepsItsExecutor) {
  asio::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  async_reader moved(std::move(in));
  EXPECT_TRUE(in.get_executor() == io.get_executor());
  EXPECT_TRUE(moved.get_executor() == io.get_executor());
}

/// Counts what Asio allocates through it: proof that an allocator bound to
/// a handler reaches the allocations made for its completion.
template <class T>
struct counting_allocator {
  using value_type = T;
  int* count;
  explicit counting_allocator(int* c) noexcept : count(c) {}
  template <class U>
  counting_allocator(counting_allocator<U> const& o) noexcept : count(o.count) {}
  T* allocate(std::size_t n) {
    ++*count;
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>().deallocate(p, n); }
  friend bool operator==(counting_allocator const& a, counting_allocator const& b) noexcept {
    return a.count == b.count;
  }
};

TEST(AsioStream, ImmediateCompletionRunsOnTheHandlersExecutorWithItsAllocator) {
  asio::io_context stream_io, handler_io;
  auto [r, w] = make_pipe();
  async_reader in(stream_io, std::move(r));
  w.write("x");
  std::string buf(4, '\0');
  result got;
  bool on_handler_io = false;
  int allocations = 0;
  in.async_read_some(
      asio::buffer(buf),
      asio::bind_allocator(counting_allocator<char>(&allocations),
                           asio::bind_executor(handler_io, [&](std::error_code ec, std::size_t n) {
                             on_handler_io = handler_io.get_executor().running_in_this_thread();
                             recorder(got)(ec, n);
                           })));
  stream_io.run();
  EXPECT_FALSE(got.done) << "the completion went to the handler's executor";
  handler_io.run();
  ASSERT_TRUE(got.done);
  EXPECT_TRUE(on_handler_io);
  EXPECT_EQ(got.n, 1u);
  EXPECT_GT(allocations, 0);
}

TEST(AsioStream, ParkedCompletionRunsOnTheHandlersExecutor) {
  asio::io_context stream_io, handler_io;
  auto [r, w] = make_pipe();
  async_reader in(stream_io, std::move(r));
  std::string buf(4, '\0');
  result got;
  bool on_handler_io = false;
  in.async_read_some(asio::buffer(buf),
                     asio::bind_executor(handler_io, [&](std::error_code ec, std::size_t n) {
                       on_handler_io = handler_io.get_executor().running_in_this_thread();
                       recorder(got)(ec, n);
                     }));
  stream_io.poll();
  w.write("y");
  stream_io.run();
  EXPECT_FALSE(got.done);
  handler_io.run();
  ASSERT_TRUE(got.done);
  EXPECT_TRUE(on_handler_io);
  EXPECT_EQ(buf.substr(0, got.n), "y");
}

TEST(AsioStream, ClosingTheStreamAbortsItsParkedRead) {
  asio::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  std::string buf(4, '\0');
  result got;
  in.async_read_some(asio::buffer(buf), recorder(got));
  io.poll();
  in.close();
  io.run();
  EXPECT_EQ(got.ec, asio::error::operation_aborted);
  EXPECT_TRUE(w.reader_closed());
}

TEST(AsioStream, DestroyingTheStreamAbortsItsParkedRead) {
  asio::io_context io;
  auto [r, w] = make_pipe();
  std::string buf(4, '\0');
  result got;
  {
    async_reader in(io, std::move(r));
    in.async_read_some(asio::buffer(buf), recorder(got));
    io.poll();
  }
  std::error_code ec;
  w.write("late", ec);
  EXPECT_EQ(ec, std::errc::broken_pipe) << "the stream closed its end";
  io.run();
  EXPECT_EQ(got.ec, asio::error::operation_aborted);
  EXPECT_EQ(got.n, 0u);
}

TEST(AsioStream, ScatterReadFillsBuffersInOrder) {
  asio::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  w.write("abcdefg");
  std::string a(3, '\0'), b(10, '\0');
  std::array bufs{asio::buffer(a), asio::buffer(b)};
  result got;
  in.async_read_some(bufs, recorder(got));
  io.run();
  EXPECT_EQ(got.n, 7u);
  EXPECT_EQ(a + b.substr(0, 4), "abcdefg");
}

TEST(AsioStream, ReleaseGivesTheEndBack) {
  asio::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  userpipe::reader back = in.release();
  EXPECT_FALSE(in.is_open());
  w.write("z");
  std::string buf(1, '\0');
  EXPECT_EQ(back.read_some(std::as_writable_bytes(std::span(buf))), 1u);
}

// ---- composed operations ----------------------------------------------------------

TEST(AsioComposed, AsyncReadUntilSplitsLines) {
  asio::io_context io;
  auto [r, w] = make_pipe({.capacity = 16});  // lines straddle the ring's wrap
  async_reader in(io, std::move(r));
  async_writer out(io, std::move(w));
  std::vector<std::string> lines;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        for (int i = 0; i < 50; ++i) {
          std::string line = "line " + std::to_string(i) + std::string(i % 23, '.') + "\n";
          co_await asio::async_write(out, asio::buffer(line), use_awaitable);
        }
        out.close();
      },
      rethrow);
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        std::string data;
        for (;;) {
          auto [ec, n] = co_await asio::async_read_until(in, asio::dynamic_buffer(data), '\n',
                                                         asio::experimental::as_tuple(use_awaitable));
          if (ec) {
            EXPECT_EQ(ec, asio::error::eof);
            EXPECT_TRUE(data.empty());
            co_return;
          }
          lines.push_back(data.substr(0, n - 1));
          data.erase(0, n);
        }
      },
      rethrow);
  io.run();
  ASSERT_EQ(lines.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(lines[i], "line " + std::to_string(i) + std::string(i % 23, '.'));
}

// ---- the fiber case: both ends on one thread --------------------------------------

awaitable<void> produce(async_writer& out, std::uint64_t total, std::size_t chunk, std::uint64_t& sum) {
  std::vector<char> buf(chunk);
  pattern p;
  checksum c;
  for (std::uint64_t done = 0; done < total;) {
    std::size_t const n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, total - done));
    p.fill(std::span(buf.data(), n));
    c.add(std::span(buf.data(), n));
    co_await asio::async_write(out, asio::buffer(buf.data(), n), use_awaitable);
    done += n;
  }
  out.close();
  sum = c.h;
}

awaitable<void> consume(async_reader& in, std::size_t chunk, std::uint64_t& bytes, std::uint64_t& sum) {
  std::vector<char> buf(chunk);
  checksum c;
  for (;;) {
    auto [ec, n] =
        co_await in.async_read_some(asio::buffer(buf), asio::experimental::as_tuple(use_awaitable));
    c.add(std::span(buf.data(), n));
    bytes += n;
    if (ec) {
      EXPECT_EQ(ec, asio::error::eof);
      break;
    }
  }
  sum = c.h;
}

TEST(AsioFibers, CoroutinesOnOneThreadMoveTheVolumeThroughA4KiBPipe) {
  asio::io_context io(1);
  auto [r, w] = make_pipe({.capacity = 4096});
  async_reader in(io, std::move(r));
  async_writer out(io, std::move(w));
  std::uint64_t const total = volume_bytes();
  std::uint64_t sent = 0, received = 0, bytes = 0;
  // Chunks larger than the ring and not a divisor of it: every op parks.
  asio::co_spawn(io, produce(out, total, 6000, sent), rethrow);
  asio::co_spawn(io, consume(in, 5000, bytes, received), rethrow);
  io.run();
  EXPECT_EQ(bytes, total);
  EXPECT_EQ(sent, received);
}

// ---- threads and contexts -----------------------------------------------------------

TEST(AsioThreads, EndsOnTwoIoContextsOnTwoThreads) {
  asio::io_context io_in, io_out;
  auto [r, w] = make_pipe({.capacity = 4096});
  async_reader in(io_in, std::move(r));
  async_writer out(io_out, std::move(w));
  std::uint64_t const total = std::min<std::uint64_t>(volume_bytes(), 256 << 20);
  std::uint64_t sent = 0, received = 0, bytes = 0;
  asio::co_spawn(io_out, produce(out, total, 3000, sent), rethrow);
  asio::co_spawn(io_in, consume(in, 7000, bytes, received), rethrow);
  std::thread t([&] { io_out.run(); });
  io_in.run();
  t.join();
  EXPECT_EQ(bytes, total);
  EXPECT_EQ(sent, received);
}

TEST(AsioThreads, EndsOnTwoIoContextsOnOneThread) {
  asio::io_context a, b;
  auto [r, w] = make_pipe({.capacity = 256});
  async_reader in(a, std::move(r));
  async_writer out(b, std::move(w));
  std::uint64_t sent = 0, received = 0, bytes = 0;
  asio::co_spawn(b, produce(out, 1 << 20, 1000, sent), rethrow);
  asio::co_spawn(a, consume(in, 300, bytes, received), rethrow);
  while (!a.stopped() || !b.stopped()) {
    a.poll();
    b.poll();
  }
  EXPECT_EQ(bytes, 1u << 20);
  EXPECT_EQ(sent, received);
}

TEST(AsioThreads, StrandOnAMultiThreadedIoContext) {
  asio::io_context io(2);
  auto [r, w] = make_pipe({.capacity = 1024});
  async_reader in(asio::make_strand(io), std::move(r));
  async_writer out(asio::make_strand(io), std::move(w));
  std::uint64_t sent = 0, received = 0, bytes = 0;
  std::uint64_t const total = 16 << 20;
  asio::co_spawn(out.get_executor(), produce(out, total, 1500, sent), rethrow);
  asio::co_spawn(in.get_executor(), consume(in, 2500, bytes, received), rethrow);
  std::thread t([&] { io.run(); });
  io.run();
  t.join();
  EXPECT_EQ(bytes, total);
  EXPECT_EQ(sent, received);
}

// ---- mixing blocking and async ends -----------------------------------------------

TEST(AsioMixed, AsyncWriterFeedsBlockingReaderThread) {
  asio::io_context io;
  auto [r, w] = make_pipe({.capacity = 4096});
  async_writer out(io, std::move(w));
  std::uint64_t const total = 32 << 20;
  std::uint64_t sent = 0;
  checksum c;
  std::uint64_t bytes = 0;
  std::thread reader_thread([&, r = std::move(r)]() mutable {
    std::vector<char> buf(5000);
    while (std::size_t n = r.read_some(std::as_writable_bytes(std::span(buf)))) {
      c.add(std::span(buf.data(), n));
      bytes += n;
    }
  });
  asio::co_spawn(io, produce(out, total, 6000, sent), rethrow);
  io.run();
  reader_thread.join();
  EXPECT_EQ(bytes, total);
  EXPECT_EQ(sent, c.h);
}

TEST(AsioMixed, BlockingWriterThreadFeedsAsyncReader) {
  asio::io_context io;
  auto [r, w] = make_pipe({.capacity = 4096});
  async_reader in(io, std::move(r));
  std::uint64_t const total = 32 << 20;
  std::uint64_t received = 0, bytes = 0;
  checksum c;
  std::thread writer_thread([&, w = std::move(w)]() mutable {
    std::vector<char> buf(7000);
    pattern p;
    for (std::uint64_t done = 0; done < total;) {
      std::size_t const n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), total - done));
      p.fill(std::span(buf.data(), n));
      c.add(std::span(buf.data(), n));
      w.write(std::as_bytes(std::span(buf.data(), n)));
      done += n;
    }
  });  // destroying w at the end of the lambda closes it: EOF
  asio::co_spawn(io, consume(in, 3000, bytes, received), rethrow);
  io.run();
  writer_thread.join();
  EXPECT_EQ(bytes, total);
  EXPECT_EQ(received, c.h);
}

// ---- cancellation ------------------------------------------------------------------------

TEST(AsioCancel, TimerBeatsParkedReadWhichLosesNoByte) {
  asio::io_context io;
  userpipe::reader r;
  userpipe::writer w;  // not a structured binding: clang 14 cannot capture those
  std::tie(r, w) = make_pipe();
  async_reader in(io, std::move(r));
  std::string second;
  bool timed_out = false;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        std::string buf(16, '\0');
        asio::steady_timer timer(io, 1ms);
        auto which = co_await (in.async_read_some(asio::buffer(buf), use_awaitable) ||
                               timer.async_wait(use_awaitable));
        timed_out = which.index() == 1;
        w.write("after");
        std::size_t n = co_await in.async_read_some(asio::buffer(buf), use_awaitable);
        second.assign(buf, 0, n);
      },
      rethrow);
  io.run();
  EXPECT_TRUE(timed_out);
  EXPECT_EQ(second, "after");
}

TEST(AsioCancel, CancelAfterWakeButBeforeResumeAbortsWithoutConsuming) {
  // The unpark() == false race: the peer's commit has already posted the
  // read when the cancellation arrives. The read must not take the bytes
  // and then report operation_aborted.
  asio::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  asio::cancellation_signal signal;
  std::string buf(16, '\0');
  result got;
  in.async_read_some(asio::buffer(buf), asio::bind_cancellation_slot(signal.slot(), recorder(got)));
  io.poll();        // parked
  w.write("kept");  // fires the park: resume is queued, not run
  signal.emit(asio::cancellation_type::terminal);
  io.run();
  EXPECT_EQ(got.ec, asio::error::operation_aborted);
  EXPECT_EQ(got.n, 0u);
  std::string rest(16, '\0');
  EXPECT_EQ(in.pipe_end().read_some(std::as_writable_bytes(std::span(rest))), 4u);
  EXPECT_EQ(rest.substr(0, 4), "kept");
}

TEST(AsioCancel, CancelledParkedWriteWritesNothing) {
  asio::io_context io;
  auto [r, w] = make_pipe({.capacity = 4});
  w.write("full");
  async_writer out(io, std::move(w));
  asio::cancellation_signal signal;
  result got;
  out.async_write_some(asio::buffer("more", 4), asio::bind_cancellation_slot(signal.slot(), recorder(got)));
  io.poll();
  signal.emit(asio::cancellation_type::terminal);
  io.run();
  EXPECT_EQ(got.ec, asio::error::operation_aborted);
  EXPECT_EQ(r.available(), 4u);
}

TEST(AsioCancel, CancelMemberAbortsThePendingRead) {
  asio::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  std::string buf(4, '\0');
  result got;
  in.async_read_some(asio::buffer(buf), recorder(got));
  io.poll();
  in.cancel();
  io.run();
  EXPECT_EQ(got.ec, asio::error::operation_aborted);
  EXPECT_TRUE(in.is_open()) << "cancel is not close";
}

// ---- teardown -------------------------------------------------------------------------------

TEST(AsioTeardown, IoContextDestroyedWithOperationsParkedLeaksNothing) {
  // Under ASan: the parked handlers (here coroutine frames owning the
  // streams) are destroyed with the context, and the peer's later write and
  // close call nothing.
  auto [r, w] = make_pipe({.capacity = 4});
  auto [r2, w2] = make_pipe({.capacity = 4});
  bool finished = false;
  {
    asio::io_context io;
    asio::co_spawn(
        io,
        [&, in = async_reader(io, std::move(r))]() mutable -> awaitable<void> {
          std::string buf(4, '\0');
          co_await in.async_read_some(asio::buffer(buf), use_awaitable);
          finished = true;
        },
        rethrow);
    w2.write("full");
    asio::co_spawn(
        io,
        [&, out = async_writer(io, std::move(w2))]() mutable -> awaitable<void> {
          co_await asio::async_write(out, asio::buffer("more", 4), use_awaitable);
          finished = true;
        },
        rethrow);
    io.run_one();
    io.run_one();
    io.poll();
    ASSERT_FALSE(io.stopped()) << "both parked, holding work";
  }
  EXPECT_FALSE(finished);
  EXPECT_TRUE(w.reader_closed()) << "the frame owning the stream was destroyed";
  std::error_code ec;
  w.write("x", ec);
  EXPECT_EQ(ec, std::errc::broken_pipe);
  w.close();
  r2.close();
}

TEST(AsioTeardown, IoContextDestroyedWhileAPeerThreadKeepsWriting) {
  // The peer may be inside the wake callback, posting, when the context is
  // destroyed: teardown waits for it (unpark) instead of racing it.
  std::uint64_t total_received = 0;
  for (int round = 0; round < 50; ++round) {
    auto [r, w] = make_pipe({.capacity = 64});
    std::error_code peer_error;
    std::thread peer([w = std::move(w), &peer_error]() mutable {
      while (!peer_error) w.write("0123456789", peer_error);
    });
    std::optional<async_reader> in;
    std::uint64_t received = 0;
    bool in_order = true;
    {
      asio::io_context io;
      in.emplace(io, std::move(r));
      asio::co_spawn(
          io,
          [&]() -> awaitable<void> {
            std::vector<char> buf(10);
            for (;;) {
              std::size_t const n = co_await in->async_read_some(asio::buffer(buf), use_awaitable);
              for (std::size_t i = 0; i < n; ++i) in_order &= buf[i] == char('0' + (received + i) % 10);
              received += n;
            }
          },
          rethrow);
      io.run_for(std::chrono::microseconds(100 + round * 20));
    }            // parked or queued while the peer writes on
    in.reset();  // the peer gets broken_pipe
    peer.join();
    EXPECT_EQ(peer_error, std::errc::broken_pipe);
    EXPECT_TRUE(in_order) << "round " << round;
    total_received += received;
  }
  EXPECT_GT(total_received, 0u) << "the coroutine read while the peer wrote";
}

TEST(AsioTeardown, StreamOutlivingItsParkedOperationsContext) {
  auto [r, w] = make_pipe();
  std::optional<async_reader> in;
  result got;
  std::string buf(4, '\0');
  {
    asio::io_context io;
    in.emplace(io, std::move(r));
    in->async_read_some(asio::buffer(buf), recorder(got));
    io.poll();
  }
  w.write("x");  // nothing is parked any more
  EXPECT_FALSE(got.done) << "destroyed uninvoked";
  in.reset();
  EXPECT_TRUE(w.reader_closed());
}
