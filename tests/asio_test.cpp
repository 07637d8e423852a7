// The promises of userpipe/asio.hpp, one test each.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

// Compiled twice: as asio_test against standalone Asio (userpipe/asio.hpp)
// and as boost_asio_test against Boost.Asio (userpipe/boost_asio.hpp), the
// same promises over the one implementation. `net` is the Asio under test,
// `up` the namespace of its streams, `error_code` its completions' code.
#ifdef USERPIPE_TEST_BOOST_ASIO
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/deferred.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <userpipe/boost_asio.hpp>
#include <userpipe/boost_asio_process.hpp>
namespace net = boost::asio;
namespace up = userpipe::boost_asio;
using error_code = boost::system::error_code;
#else
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
#include <asio/thread_pool.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <asio/write.hpp>
#include <userpipe/asio.hpp>
#include <userpipe/asio_process.hpp>
namespace net = asio;
namespace up = userpipe;
using error_code = std::error_code;
#endif

#include "support/get_within.hpp"

using namespace std::chrono_literals;
using namespace net::experimental::awaitable_operators;
using net::awaitable;
using net::use_awaitable;
using up::async_reader;
using up::async_writer;
using userpipe::make_pipe;

namespace {

/// co_spawn's completion: a coroutine that throws fails the test (the
/// exception leaves io.run()) instead of vanishing as with asio::detached.
auto const rethrow = [](std::exception_ptr e, auto&&...) {
  if (e) std::rethrow_exception(e);
};

struct result {
  error_code ec;
  std::size_t n = 0;
  bool done = false;
};

auto recorder(result& r) {
  return [&r](error_code ec, std::size_t n) {
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
  net::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  w.write("hello");
  std::string buf(16, '\0');
  result got;
  in.async_read_some(net::buffer(buf), recorder(got));
  EXPECT_FALSE(got.done) << "never inside the initiating call";
  io.run();
  ASSERT_TRUE(got.done);
  EXPECT_FALSE(got.ec);
  EXPECT_EQ(buf.substr(0, got.n), "hello");
}

TEST(AsioTokens, UseAwaitableWaitsForData) {
  net::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  async_writer out(io, std::move(w));
  std::string got;
  net::co_spawn(
      io,
      [&]() -> awaitable<void> {
        std::string buf(16, '\0');
        std::size_t n = co_await in.async_read_some(net::buffer(buf), use_awaitable);
        got.assign(buf, 0, n);
      },
      rethrow);
  net::co_spawn(
      io, [&]() -> awaitable<void> { co_await net::async_write(out, net::buffer("ping", 4), use_awaitable); },
      rethrow);
  io.run();
  EXPECT_EQ(got, "ping");
}

TEST(AsioTokens, DeferredRunsWhenInvoked) {
  net::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  std::string buf(8, '\0');
  auto op = in.async_read_some(net::buffer(buf), net::experimental::deferred);
  w.write("abc");
  result got;
  std::move(op)(recorder(got));
  io.run();
  EXPECT_FALSE(got.ec);
  EXPECT_EQ(buf.substr(0, got.n), "abc");
}

TEST(AsioTokens, UseFutureCompletesFromAnotherThread) {
  net::io_context io;
  auto guard = net::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  std::string buf(8, '\0');
  std::future<std::size_t> n = in.async_read_some(net::buffer(buf), net::use_future);
  w.write("xyz");
  EXPECT_EQ(n.get(), 3u);
  EXPECT_EQ(buf.substr(0, 3), "xyz");
  // The error as a value: an exception crossing threads through a future
  // trips ThreadSanitizer inside the uninstrumented libstdc++.
  auto eof = in.async_read_some(net::buffer(buf),
                                net::use_future([](error_code e, std::size_t n) { return std::pair(e, n); }));
  w.close();
  auto [ec, zero] = eof.get();
  EXPECT_EQ(ec, net::error::eof);
  EXPECT_EQ(zero, 0u);
  guard.reset();
  runner.join();
}

TEST(AsioTokens, AsTupleReportsErrorsAsValues) {
  net::io_context io;
  auto [r, w] = make_pipe();
  async_writer out(io, std::move(w));
  r.close();
  error_code ec;
  net::co_spawn(
      io,
      [&]() -> awaitable<void> {
        auto [e, n] =
            co_await out.async_write_some(net::buffer("x", 1), net::experimental::as_tuple(use_awaitable));
        ec = e;
        EXPECT_EQ(n, 0u);
      },
      rethrow);
  io.run();
  EXPECT_EQ(ec, net::error::broken_pipe) << "as Asio's own sockets report it";
}

TEST(AsioTokens, DefaultTokenViaAsDefaultOn) {
  using awaitable_reader = net::use_awaitable_t<>::as_default_on_t<async_reader>;
  using awaitable_writer = net::use_awaitable_t<>::as_default_on_t<async_writer>;
  net::io_context io;
  auto [r, w] = make_pipe();
  std::string got;
  net::co_spawn(
      io,
      [&, in = awaitable_reader(io.get_executor(), std::move(r)),
       out = awaitable_writer(io.get_executor(), std::move(w))]() mutable -> awaitable<void> {
        co_await out.async_write_some(net::buffer("ok", 2));
        std::string buf(2, '\0');
        std::size_t n = co_await in.async_read_some(net::buffer(buf));
        got.assign(buf, 0, n);
      },
      rethrow);
  io.run();
  EXPECT_EQ(got, "ok");
}

// ---- completions ---------------------------------------------------------------

TEST(AsioStream, ZeroSizeReadCompletesAtOnceOnAnEmptyPipe) {
  net::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  result got;
  in.async_read_some(net::mutable_buffer(), recorder(got));
  EXPECT_FALSE(got.done);
  io.run();  // would not return if the read had parked
  ASSERT_TRUE(got.done);
  EXPECT_FALSE(got.ec);
  EXPECT_EQ(got.n, 0u);
}

TEST(AsioStream, ZeroSizeWriteCompletesAtOnceOnAFullPipe) {
  net::io_context io;
  auto [r, w] = make_pipe({.capacity = 4});
  w.write("full");
  async_writer out(io, std::move(w));
  result got;
  out.async_write_some(net::const_buffer(), recorder(got));
  io.run();
  ASSERT_TRUE(got.done);
  EXPECT_FALSE(got.ec);
}

TEST(AsioStream, ReaderGetsEofAfterLastByte) {
  net::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  w.write("tail");
  w.close();
  std::string all;
  error_code ec;
  net::co_spawn(
      io,
      [&]() -> awaitable<void> {
        std::string buf(3, '\0');
        for (;;) {
          auto [e, n] =
              co_await in.async_read_some(net::buffer(buf), net::experimental::as_tuple(use_awaitable));
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
  EXPECT_EQ(ec, net::error::eof);
}

TEST(AsioStream, WriterCloseReasonReachesAsyncReader) {
  net::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  std::string buf(4, '\0');
  result got;
  in.async_read_some(net::buffer(buf), recorder(got));
  w.close(std::make_error_code(std::errc::connection_reset));
  io.run();
  EXPECT_EQ(got.ec, std::errc::connection_reset);
}

TEST(AsioStream, ParkedWriteGetsBrokenPipeWhenReaderCloses) {
  net::io_context io;
  auto [r, w] = make_pipe({.capacity = 4});
  async_writer out(io, std::move(w));
  result got;
  net::async_write(out, net::buffer("0123456789", 10), recorder(got));
  io.poll();
  EXPECT_FALSE(got.done) << "parked on a full pipe";
  r.close();
  io.run();
  EXPECT_EQ(got.ec, net::error::broken_pipe);
  EXPECT_EQ(got.n, 4u) << "async_write reports what went in before";
}

TEST(AsioStream, ReadOnClosedStreamIsBadDescriptor) {
  net::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  in.close();
  EXPECT_FALSE(in.is_open());
  std::string buf(4, '\0');
  result got;
  in.async_read_some(net::buffer(buf), recorder(got));
  io.run();
  EXPECT_EQ(got.ec, net::error::bad_descriptor);
}

TEST(AsioStream, ReadOnMovedFromStreamIsBadDescriptor) {
  net::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  async_reader moved(std::move(in));
  EXPECT_FALSE(in.is_open());
  std::string buf(4, '\0');
  result got;
  in.async_read_some(net::buffer(buf), recorder(got));
  io.run();
  ASSERT_TRUE(got.done);
  EXPECT_EQ(got.ec, net::error::bad_descriptor);
  EXPECT_EQ(got.n, 0u);
  EXPECT_TRUE(moved.is_open()) << "the operation did not touch the stream the end moved to";
}

TEST(AsioStream, WriteOnMovedFromStreamIsBadDescriptor) {
  net::io_context io;
  auto [r, w] = make_pipe();
  async_writer out(io, std::move(w));
  async_writer moved(io, userpipe::writer{});
  moved = std::move(out);
  std::string const data = "abcd";
  result got;
  out.async_write_some(net::buffer(data), recorder(got));
  io.run();
  ASSERT_TRUE(got.done);
  EXPECT_EQ(got.ec, net::error::bad_descriptor);
  EXPECT_EQ(got.n, 0u);
  EXPECT_EQ(r.stats().bytes_written, 0u);
}

TEST(AsioStream, MovedFromStreamKeepsItsExecutor) {
  net::io_context io;
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
  net::io_context stream_io, handler_io;
  auto [r, w] = make_pipe();
  async_reader in(stream_io, std::move(r));
  w.write("x");
  std::string buf(4, '\0');
  result got;
  bool on_handler_io = false;
  int allocations = 0;
  in.async_read_some(net::buffer(buf),
                     net::bind_allocator(counting_allocator<char>(&allocations),
                                         net::bind_executor(handler_io, [&](error_code ec, std::size_t n) {
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
  net::io_context stream_io, handler_io;
  auto [r, w] = make_pipe();
  async_reader in(stream_io, std::move(r));
  std::string buf(4, '\0');
  result got;
  bool on_handler_io = false;
  in.async_read_some(net::buffer(buf), net::bind_executor(handler_io, [&](error_code ec, std::size_t n) {
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
  net::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  std::string buf(4, '\0');
  result got;
  in.async_read_some(net::buffer(buf), recorder(got));
  io.poll();
  in.close();
  io.run();
  EXPECT_EQ(got.ec, net::error::operation_aborted);
  EXPECT_TRUE(w.reader_closed());
}

TEST(AsioStream, DestroyingTheStreamAbortsItsParkedRead) {
  net::io_context io;
  auto [r, w] = make_pipe();
  std::string buf(4, '\0');
  result got;
  {
    async_reader in(io, std::move(r));
    in.async_read_some(net::buffer(buf), recorder(got));
    io.poll();
  }
  std::error_code ec;
  w.write("late", ec);
  EXPECT_EQ(ec, std::errc::broken_pipe) << "the stream closed its end";
  io.run();
  EXPECT_EQ(got.ec, net::error::operation_aborted);
  EXPECT_EQ(got.n, 0u);
}

TEST(AsioStream, ScatterReadFillsBuffersInOrder) {
  net::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  w.write("abcdefg");
  std::string a(3, '\0'), b(10, '\0');
  std::array bufs{net::buffer(a), net::buffer(b)};
  result got;
  in.async_read_some(bufs, recorder(got));
  io.run();
  EXPECT_EQ(got.n, 7u);
  EXPECT_EQ(a + b.substr(0, 4), "abcdefg");
}

TEST(AsioStream, ReleaseGivesTheEndBack) {
  net::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  userpipe::reader back = in.release();
  EXPECT_FALSE(in.is_open());
  w.write("z");
  std::string buf(1, '\0');
  EXPECT_EQ(back.read_some(std::as_writable_bytes(std::span(buf))), 1u);
}

// ---- composed operations ----------------------------------------------------------

// ---- async_wait: readiness without a transfer ------------------------------

TEST(AsioWait, ReaderWaitCompletesWhenDataArrivesAndMovesNothing) {
  net::io_context io;
  auto [r, w] = make_pipe({.capacity = 64});
  async_reader in(io, std::move(r));
  result got;
  in.async_wait(recorder(got));
  io.poll();
  EXPECT_FALSE(got.done) << "empty pipe: parked";
  w.write("abc");
  io.run();
  ASSERT_TRUE(got.done);
  EXPECT_FALSE(got.ec);
  EXPECT_EQ(got.n, 3u) << "what try_peek gives now";
  EXPECT_EQ(in.pipe_end().available(), 3u) << "nothing consumed";
}

TEST(AsioWait, ReaderWaitGetsEofAfterTheLastByte) {
  net::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  w.close();
  result got;
  in.async_wait(recorder(got));
  io.run();
  ASSERT_TRUE(got.done);
  EXPECT_EQ(got.ec, net::error::eof);
}

TEST(AsioWait, WriterWaitCompletesWhenRoomIsFreed) {
  net::io_context io;
  auto [r, w] = make_pipe({.capacity = 64});
  async_writer out(io, std::move(w));
  std::string const fill(64, 'x');
  ASSERT_EQ(out.pipe_end().write_some(fill), 64u);
  result got;
  out.async_wait(16, recorder(got));
  io.poll();
  EXPECT_FALSE(got.done) << "full pipe: parked";
  std::string buf(32, '\0');
  ASSERT_EQ(r.read_some(std::as_writable_bytes(std::span(buf))), 32u);
  io.run();
  ASSERT_TRUE(got.done);
  EXPECT_FALSE(got.ec);
  EXPECT_GE(got.n, 16u);
}

TEST(AsioWait, WriterWaitGetsBrokenPipeWhenTheReaderGoes) {
  net::io_context io;
  auto [r, w] = make_pipe({.capacity = 64});
  async_writer out(io, std::move(w));
  ASSERT_EQ(out.pipe_end().write_some(std::string(64, 'x')), 64u);
  result got;
  out.async_wait(1, recorder(got));
  io.poll();
  r.close();
  io.run();
  ASSERT_TRUE(got.done);
  EXPECT_EQ(got.ec, net::error::broken_pipe);
}

TEST(AsioComposed, AsyncReadUntilSplitsLines) {
  net::io_context io;
  auto [r, w] = make_pipe({.capacity = 16});  // lines straddle the ring's wrap
  async_reader in(io, std::move(r));
  async_writer out(io, std::move(w));
  std::vector<std::string> lines;
  net::co_spawn(
      io,
      [&]() -> awaitable<void> {
        for (int i = 0; i < 50; ++i) {
          std::string line = "line " + std::to_string(i) + std::string(i % 23, '.') + "\n";
          co_await net::async_write(out, net::buffer(line), use_awaitable);
        }
        out.close();
      },
      rethrow);
  net::co_spawn(
      io,
      [&]() -> awaitable<void> {
        std::string data;
        for (;;) {
          auto [ec, n] = co_await net::async_read_until(in, net::dynamic_buffer(data), '\n',
                                                        net::experimental::as_tuple(use_awaitable));
          if (ec) {
            EXPECT_EQ(ec, net::error::eof);
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
    co_await net::async_write(out, net::buffer(buf.data(), n), use_awaitable);
    done += n;
  }
  out.close();
  sum = c.h;
}

awaitable<void> consume(async_reader& in, std::size_t chunk, std::uint64_t& bytes, std::uint64_t& sum) {
  std::vector<char> buf(chunk);
  checksum c;
  for (;;) {
    auto [ec, n] = co_await in.async_read_some(net::buffer(buf), net::experimental::as_tuple(use_awaitable));
    c.add(std::span(buf.data(), n));
    bytes += n;
    if (ec) {
      EXPECT_EQ(ec, net::error::eof);
      break;
    }
  }
  sum = c.h;
}

TEST(AsioFibers, CoroutinesOnOneThreadMoveTheVolumeThroughA4KiBPipe) {
  net::io_context io(1);
  auto [r, w] = make_pipe({.capacity = 4096});
  async_reader in(io, std::move(r));
  async_writer out(io, std::move(w));
  std::uint64_t const total = volume_bytes();
  std::uint64_t sent = 0, received = 0, bytes = 0;
  // Chunks larger than the ring and not a divisor of it: every op parks.
  net::co_spawn(io, produce(out, total, 6000, sent), rethrow);
  net::co_spawn(io, consume(in, 5000, bytes, received), rethrow);
  io.run();
  EXPECT_EQ(bytes, total);
  EXPECT_EQ(sent, received);
}

// ---- threads and contexts -----------------------------------------------------------

TEST(AsioThreads, EndsOnTwoIoContextsOnTwoThreads) {
  net::io_context io_in, io_out;
  auto [r, w] = make_pipe({.capacity = 4096});
  async_reader in(io_in, std::move(r));
  async_writer out(io_out, std::move(w));
  std::uint64_t const total = std::min<std::uint64_t>(volume_bytes(), 256 << 20);
  std::uint64_t sent = 0, received = 0, bytes = 0;
  net::co_spawn(io_out, produce(out, total, 3000, sent), rethrow);
  net::co_spawn(io_in, consume(in, 7000, bytes, received), rethrow);
  std::thread t([&] { io_out.run(); });
  io_in.run();
  t.join();
  EXPECT_EQ(bytes, total);
  EXPECT_EQ(sent, received);
}

TEST(AsioThreads, EndsOnTwoIoContextsOnOneThread) {
  net::io_context a, b;
  auto [r, w] = make_pipe({.capacity = 256});
  async_reader in(a, std::move(r));
  async_writer out(b, std::move(w));
  std::uint64_t sent = 0, received = 0, bytes = 0;
  net::co_spawn(b, produce(out, 1 << 20, 1000, sent), rethrow);
  net::co_spawn(a, consume(in, 300, bytes, received), rethrow);
  while (!a.stopped() || !b.stopped()) {
    a.poll();
    b.poll();
  }
  EXPECT_EQ(bytes, 1u << 20);
  EXPECT_EQ(sent, received);
}

TEST(AsioThreads, StrandOnAMultiThreadedIoContext) {
  net::io_context io(2);
  auto [r, w] = make_pipe({.capacity = 1024});
  async_reader in(net::make_strand(io), std::move(r));
  async_writer out(net::make_strand(io), std::move(w));
  std::uint64_t sent = 0, received = 0, bytes = 0;
  std::uint64_t const total = 16 << 20;
  net::co_spawn(out.get_executor(), produce(out, total, 1500, sent), rethrow);
  net::co_spawn(in.get_executor(), consume(in, 2500, bytes, received), rethrow);
  std::thread t([&] { io.run(); });
  io.run();
  t.join();
  EXPECT_EQ(bytes, total);
  EXPECT_EQ(sent, received);
}

// ---- spawn on any kind of executor ------------------------------------------------
//
// spawn(executor, ...) puts a child's pumps on a strand of the executor it is
// given, and the async ends on any executor: an any_io_executor, a strand
// typed as one, a strand of one, a thread_pool's. Each test talks to
// `tr a-z A-Z; exit 3` through both directions at once (the input is larger
// than the pipes, so neither side can finish first) and checks every byte,
// the end of the output and the exit status.

/// What the child said and how it ended.
struct child_run {
  std::string out;
  error_code end;       // of the read that found the end of the output
  error_code wait_end;  // of async_wait_exit
  userpipe::exit_status status;
};

/// The input: 300 KiB of numbered lines.
std::string shout_input() {
  std::string s;
  for (int i = 0; s.size() < (300u << 10); ++i) s += "line " + std::to_string(i) + " of the input\n";
  return s;
}

std::string upper(std::string s) {
  for (char& c : s)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return s;
}

template <class Executor>
awaitable<void> feed(up::basic_async_writer<Executor>& in, std::string const& input) {
  co_await net::async_write(in, net::buffer(input), use_awaitable);
  in.close();  // the child reads EOF
}

template <class Executor>
awaitable<void> drain_then_reap(Executor ex, up::basic_async_reader<Executor>& out, userpipe::child& c,
                                child_run& r) {
  auto [ec, n] =
      co_await net::async_read(out, net::dynamic_buffer(r.out), net::experimental::as_tuple(use_awaitable));
  r.end = ec;
  auto [wec, status] = co_await up::async_wait_exit(ex, c, net::experimental::as_tuple(use_awaitable));
  r.wait_end = wec;
  r.status = status;
}

/// A child spawned on `ex` with its ends on `ex`; `done` is ready once its
/// output has ended and it has been reaped. The handle kills and reaps it
/// on every other path.
template <class Executor>
struct shouting_child {
  explicit shouting_child(Executor ex)
      : child(up::spawn(ex, {"/bin/sh", "-c", "tr a-z A-Z; exit 3"},
                        {.in = userpipe::stdio::pipe, .out = userpipe::stdio::pipe})),
        in(ex, std::move(child.in())),
        out(ex, std::move(child.out())) {
    net::co_spawn(ex, feed(in, input), rethrow);
    net::co_spawn(ex, drain_then_reap(ex, out, child, run),
                  [this](std::exception_ptr e) { finished.set_value(e); });
  }

  /// Waits (bounded) for the end, then checks everything the child did.
  void expect_all_said_and_exit_3() {
    std::future<std::exception_ptr> f = finished.get_future();
    if (std::exception_ptr e = userpipe_support::get_within(f)) std::rethrow_exception(e);
    EXPECT_EQ(run.out.size(), input.size());
    EXPECT_TRUE(run.out == upper(input)) << "the output differs from the input upper-cased";
    EXPECT_EQ(run.end, net::error::eof);
    EXPECT_FALSE(run.wait_end) << run.wait_end.message();
    EXPECT_EQ(run.status, (userpipe::exit_status{.code = 3, .signal = 0}));
  }

  std::string const input = shout_input();
  userpipe::child child;
  up::basic_async_writer<Executor> in;
  up::basic_async_reader<Executor> out;
  child_run run;
  std::promise<std::exception_ptr> finished;
};

/// Runs `io` on `n` threads until it runs out of work.
struct runner {
  runner(net::io_context& io, int n) {
    for (int i = 0; i < n; ++i) threads.emplace_back([&io] { io.run(); });
  }
  ~runner() {
    for (std::thread& t : threads) t.join();
  }
  std::vector<std::thread> threads;
};

TEST(AsioSpawn, OnAnAnyIoExecutorGivesAllOutputEofAndExitStatus) {
  net::io_context io;
  net::any_io_executor const ex = io.get_executor();
  shouting_child<net::any_io_executor> c(ex);
  runner run(io, 1);
  c.expect_all_said_and_exit_3();
}

TEST(AsioSpawn, OnAStrandTypedAsAnyIoExecutorOverATwoThreadIoContext) {
  net::io_context io(2);
  net::any_io_executor const ex = net::make_strand(io);
  shouting_child<net::any_io_executor> c(ex);
  runner run(io, 2);
  c.expect_all_said_and_exit_3();
}

TEST(AsioSpawn, OnAStrandOfAnyIoExecutorOverATwoThreadIoContext) {
  net::io_context io(2);
  auto const ex = net::make_strand(net::any_io_executor(io.get_executor()));
  static_assert(std::is_same_v<std::remove_const_t<decltype(ex)>, net::strand<net::any_io_executor>>);
  shouting_child<net::strand<net::any_io_executor>> c(ex);
  runner run(io, 2);
  c.expect_all_said_and_exit_3();
}

TEST(AsioSpawn, OnAThreadPoolExecutor) {
  net::thread_pool pool(2);
  shouting_child<net::thread_pool::executor_type> c(pool.get_executor());
  c.expect_all_said_and_exit_3();
  pool.join();
}

// ---- mixing blocking and async ends -----------------------------------------------

TEST(AsioMixed, AsyncWriterFeedsBlockingReaderThread) {
  net::io_context io;
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
  net::co_spawn(io, produce(out, total, 6000, sent), rethrow);
  io.run();
  reader_thread.join();
  EXPECT_EQ(bytes, total);
  EXPECT_EQ(sent, c.h);
}

TEST(AsioMixed, BlockingWriterThreadFeedsAsyncReader) {
  net::io_context io;
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
  net::co_spawn(io, consume(in, 3000, bytes, received), rethrow);
  io.run();
  writer_thread.join();
  EXPECT_EQ(bytes, total);
  EXPECT_EQ(received, c.h);
}

// ---- cancellation ------------------------------------------------------------------------

TEST(AsioCancel, TimerBeatsParkedReadWhichLosesNoByte) {
  net::io_context io;
  userpipe::reader r;
  userpipe::writer w;  // not a structured binding: clang 14 cannot capture those
  std::tie(r, w) = make_pipe();
  async_reader in(io, std::move(r));
  std::string second;
  bool timed_out = false;
  net::co_spawn(
      io,
      [&]() -> awaitable<void> {
        std::string buf(16, '\0');
        net::steady_timer timer(io, 1ms);
        auto which =
            co_await (in.async_read_some(net::buffer(buf), use_awaitable) || timer.async_wait(use_awaitable));
        timed_out = which.index() == 1;
        w.write("after");
        std::size_t n = co_await in.async_read_some(net::buffer(buf), use_awaitable);
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
  net::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  net::cancellation_signal signal;
  std::string buf(16, '\0');
  result got;
  in.async_read_some(net::buffer(buf), net::bind_cancellation_slot(signal.slot(), recorder(got)));
  io.poll();        // parked
  w.write("kept");  // fires the park: resume is queued, not run
  signal.emit(net::cancellation_type::terminal);
  io.run();
  EXPECT_EQ(got.ec, net::error::operation_aborted);
  EXPECT_EQ(got.n, 0u);
  std::string rest(16, '\0');
  EXPECT_EQ(in.pipe_end().read_some(std::as_writable_bytes(std::span(rest))), 4u);
  EXPECT_EQ(rest.substr(0, 4), "kept");
}

TEST(AsioCancel, CancelledParkedWriteWritesNothing) {
  net::io_context io;
  auto [r, w] = make_pipe({.capacity = 4});
  w.write("full");
  async_writer out(io, std::move(w));
  net::cancellation_signal signal;
  result got;
  out.async_write_some(net::buffer("more", 4), net::bind_cancellation_slot(signal.slot(), recorder(got)));
  io.poll();
  signal.emit(net::cancellation_type::terminal);
  io.run();
  EXPECT_EQ(got.ec, net::error::operation_aborted);
  EXPECT_EQ(r.available(), 4u);
}

TEST(AsioCancel, CancelMemberAbortsThePendingRead) {
  net::io_context io;
  auto [r, w] = make_pipe();
  async_reader in(io, std::move(r));
  std::string buf(4, '\0');
  result got;
  in.async_read_some(net::buffer(buf), recorder(got));
  io.poll();
  in.cancel();
  io.run();
  EXPECT_EQ(got.ec, net::error::operation_aborted);
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
    net::io_context io;
    net::co_spawn(
        io,
        [&, in = async_reader(io, std::move(r))]() mutable -> awaitable<void> {
          std::string buf(4, '\0');
          co_await in.async_read_some(net::buffer(buf), use_awaitable);
          finished = true;
        },
        rethrow);
    w2.write("full");
    net::co_spawn(
        io,
        [&, out = async_writer(io, std::move(w2))]() mutable -> awaitable<void> {
          co_await net::async_write(out, net::buffer("more", 4), use_awaitable);
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
      net::io_context io;
      in.emplace(io, std::move(r));
      net::co_spawn(
          io,
          [&]() -> awaitable<void> {
            std::vector<char> buf(10);
            for (;;) {
              std::size_t const n = co_await in->async_read_some(net::buffer(buf), use_awaitable);
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
    net::io_context io;
    in.emplace(io, std::move(r));
    in->async_read_some(net::buffer(buf), recorder(got));
    io.poll();
  }
  w.write("x");  // nothing is parked any more
  EXPECT_FALSE(got.done) << "destroyed uninvoked";
  in.reset();
  EXPECT_TRUE(w.reader_closed());
}
