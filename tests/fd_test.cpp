// The promises of userpipe/fd.hpp: pumps between a descriptor and a ring.
// Every test runs over both modes: /threads calls userpipe::pump on the
// test's thread, /event_loop runs userpipe::async_pump
// (userpipe/asio_process.hpp) on an io_context there, with the ring end in an
// async stream and the fd in a stream_descriptor, and hands both back.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <userpipe/fd.hpp>
#ifdef USERPIPE_TEST_EVENT_LOOP
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <userpipe/asio_process.hpp>
#endif
#include <vector>

#include "support/get_within.hpp"
#include "support/until.hpp"

using namespace std::chrono_literals;
using userpipe::make_pipe;

namespace {

struct kernel_pipe {
  int read_fd = -1, write_fd = -1;
  explicit kernel_pipe(int flags = 0) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | flags) != 0)
      throw std::system_error(errno, std::generic_category(), "pipe2");
    read_fd = fds[0];
    write_fd = fds[1];
  }
  void close_read() { ::close(std::exchange(read_fd, -1)); }
  void close_write() { ::close(std::exchange(write_fd, -1)); }
  ~kernel_pipe() {
    if (read_fd >= 0) ::close(read_fd);
    if (write_fd >= 0) ::close(write_fd);
  }
};

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  std::uint32_t x = 12345;
  for (auto& c : s) {
    x = x * 1103515245 + 12345;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

void write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::system_error(errno, std::generic_category(), "write");
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::string read_all(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return out;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

std::string read_all(userpipe::reader& r, std::error_code& ec) {
  std::string out, buf(65536, '\0');
  for (;;) {
    std::size_t n = r.read_some({reinterpret_cast<std::byte*>(buf.data()), buf.size()}, ec);
    if (n == 0) return out;
    out.append(buf, 0, n);
  }
}

using userpipe_support::current_syscall;
using userpipe_support::get_within;
using userpipe_support::wait_until;

enum class pump_mode { threads, event_loop };

/// The pumps in the mode under test, with userpipe::pump's signatures.
class Pump : public ::testing::TestWithParam<pump_mode> {
 protected:
  std::uint64_t pump(int fd, userpipe::writer& w, std::error_code& ec) {
    if (GetParam() == pump_mode::threads) return userpipe::pump(fd, w, ec);
    return on_loop(fd, w, ec);
  }
  std::uint64_t pump(userpipe::reader& r, int fd, std::error_code& ec) {
    if (GetParam() == pump_mode::threads) return userpipe::pump(r, fd, ec);
    return on_loop(r, fd, ec);
  }
  template <class From, class To>
  std::uint64_t pump(From& from, To& to) {
    std::error_code ec;
    std::uint64_t const n = pump(from, to, ec);
    if (ec) throw std::system_error(ec, "pump");
    return n;
  }

 private:
  template <class A, class B>
  static std::uint64_t on_loop(A& a, B& b, std::error_code& ec) {
#ifdef USERPIPE_TEST_EVENT_LOOP
    asio::io_context io;
    std::uint64_t n = 0;
    auto done = [&](std::error_code e, std::uint64_t k) {
      ec = e;
      n = k;
    };
    if constexpr (std::is_same_v<A, int>) {
      asio::posix::stream_descriptor from(io, a);
      userpipe::async_writer to(io, std::move(b));
      userpipe::async_pump(from, to, done);
      io.run();
      (void)from.release();
      b = to.release();
    } else {
      userpipe::async_reader from(io, std::move(a));
      asio::posix::stream_descriptor to(io, b);
      userpipe::async_pump(from, to, done);
      io.run();
      (void)to.release();
      a = from.release();
    }
    return n;
#else
    (void)a, (void)b, (void)ec;
    std::abort();
#endif
  }
};
using PumpFromFd = Pump;
using PumpIntoFd = Pump;

std::string mode_name(::testing::TestParamInfo<pump_mode> const& info) {
  return info.param == pump_mode::threads ? "threads" : "event_loop";
}

#ifdef USERPIPE_TEST_EVENT_LOOP
auto const modes = ::testing::Values(pump_mode::threads, pump_mode::event_loop);
#else
auto const modes = ::testing::Values(pump_mode::threads);
#endif

}  // namespace

TEST_P(PumpFromFd, DeliversEveryByteThenEof) {
  kernel_pipe kp;
  auto [r, w] = make_pipe({.capacity = 4096});
  std::string const data = pattern(3 << 20);
  auto feeder = std::async(std::launch::async, [&] {
    write_all(kp.write_fd, data);
    kp.close_write();
  });
  auto pumped =
      std::async(std::launch::async, [&, w = std::move(w)]() mutable { return pump(kp.read_fd, w); });
  std::error_code ec;
  EXPECT_EQ(read_all(r, ec), data);
  EXPECT_FALSE(ec);
  EXPECT_EQ(get_within(pumped), data.size());
  feeder.get();
}

TEST_P(PumpFromFd, WaitsForANonBlockingFdInsteadOfFailing) {
  kernel_pipe kp(O_NONBLOCK);
  auto [r, w] = make_pipe();
  auto pumped =
      std::async(std::launch::async, [&, w = std::move(w)]() mutable { return pump(kp.read_fd, w); });
  std::string got;
  for (int i = 0; i < 20; ++i) {
    std::string piece = "piece " + std::to_string(i) + "\n";
    write_all(kp.write_fd, piece);
    std::string line;
    ASSERT_TRUE(r.read_line(line));
    got += line + "\n";
  }
  kp.close_write();
  std::string rest;
  EXPECT_FALSE(r.read_line(rest));
  EXPECT_EQ(get_within(pumped), got.size());
}

TEST_P(PumpFromFd, ReadErrorClosesWriterWithThatErrorAfterTheBytes) {
  // A descriptor open for writing only: read(2) fails with EBADF.
  int fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto [r, w] = make_pipe();
  w.write("before");
  std::error_code ec;
  EXPECT_EQ(pump(fd, w, ec), 0u);
  EXPECT_EQ(ec, std::errc::bad_file_descriptor);
  std::error_code read_ec;
  EXPECT_EQ(read_all(r, read_ec), "before");
  EXPECT_EQ(read_ec, std::errc::bad_file_descriptor);
  ::close(fd);
}

TEST_P(PumpFromFd, ReaderGoneEndsWithBrokenPipeAndLeavesFdOpen) {
  kernel_pipe kp;
  auto [r, w] = make_pipe();
  r.close();
  write_all(kp.write_fd, "unread");
  try {
    pump(kp.read_fd, w);
    ADD_FAILURE() << "no exception";
  } catch (std::system_error const& e) {
    EXPECT_EQ(e.code(), std::errc::broken_pipe);
  }
  EXPECT_EQ(::fcntl(kp.read_fd, F_GETFD) >= 0, true);
  kp.close_write();
  EXPECT_EQ(read_all(kp.read_fd), "unread");
}

namespace {
std::atomic<int> interruptions{0};
}  // namespace

TEST_P(PumpFromFd, RetriesInterruptedReads) {
  struct sigaction sa {};
  sa.sa_handler = [](int) { interruptions.fetch_add(1); };  // no SA_RESTART: read(2) fails with EINTR
  struct sigaction old {};
  interruptions = 0;
  ASSERT_EQ(::sigaction(SIGUSR1, &sa, &old), 0);
  kernel_pipe kp;
  auto [r, w] = make_pipe();
  std::promise<std::pair<pthread_t, pid_t>> self;
  auto pumped = std::async(std::launch::async, [&, w = std::move(w)]() mutable {
    self.set_value({pthread_self(), ::gettid()});
    return pump(kp.read_fd, w);
  });
  auto const [pumper, tid] = self.get_future().get();
  // Each signal goes in only once the pump is blocked in read(2) on the
  // empty pipe, so each one really interrupts a read: the pump must retry.
  for (int i = 0; i < 5; ++i) {
    auto ended = [&pumped] { return pumped.wait_for(0s) == std::future_status::ready; };
    // (In event-loop mode the pump's thread blocks in epoll_wait instead.)
    auto blocked = [tid = tid] {
      long const call = current_syscall(tid);
      return call == SYS_read || call == SYS_epoll_wait || call == SYS_epoll_pwait;
    };
    ASSERT_TRUE(wait_until([&] { return blocked() || ended(); }, "the pump blocks in read(2)"));
    ASSERT_FALSE(ended()) << "the pump gave up on an interrupted read";
    ASSERT_EQ(pthread_kill(pumper, SIGUSR1), 0);
    ASSERT_TRUE(wait_until([i] { return interruptions.load() == i + 1; }, "the signal handler ran"));
  }
  write_all(kp.write_fd, "after signals");
  kp.close_write();
  std::error_code ec;
  EXPECT_EQ(read_all(r, ec), "after signals");
  EXPECT_FALSE(ec);
  EXPECT_EQ(get_within(pumped), 13u);
  ::sigaction(SIGUSR1, &old, nullptr);
}

TEST_P(PumpIntoFd, WritesEveryByteAndReturnsAtEofLeavingFdOpen) {
  kernel_pipe kp;
  auto [r, w] = make_pipe({.capacity = 8192});
  std::string const data = pattern(3 << 20);
  auto producer = std::async(std::launch::async, [&, w = std::move(w)]() mutable {
    w.write(data);
    w.close();
  });
  auto pumped = std::async(std::launch::async, [&, r = std::move(r)]() mutable {
    std::uint64_t n = pump(r, kp.write_fd);
    kp.close_write();  // the fd is ours to close
    return n;
  });
  EXPECT_EQ(read_all(kp.read_fd), data);
  EXPECT_EQ(get_within(pumped), data.size());
  producer.get();
}

TEST_P(PumpIntoFd, NoReaderOnFdClosesReaderWithBrokenPipeAndProcessSurvivesSigpipe) {
  // SIGPIPE at its default disposition would kill this test binary.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  struct sigaction old {};
  ASSERT_EQ(::sigaction(SIGPIPE, &dfl, &old), 0);
  kernel_pipe kp;
  kp.close_read();
  auto [r, w] = make_pipe();
  w.write("nobody reads this");
  std::error_code ec;
  EXPECT_EQ(pump(r, kp.write_fd, ec), 0u);
  EXPECT_EQ(ec, std::errc::broken_pipe);
  EXPECT_FALSE(r.is_open());
  std::error_code wec;
  w.write("more", wec);
  EXPECT_EQ(wec, std::errc::broken_pipe);
  ::sigaction(SIGPIPE, &old, nullptr);
}

TEST_P(PumpIntoFd, WriterCloseErrorEndsThePumpWithThatError) {
  kernel_pipe kp;
  auto [r, w] = make_pipe();
  w.write("partial");
  w.close(std::make_error_code(std::errc::io_error));
  try {
    pump(r, kp.write_fd);
    ADD_FAILURE() << "no exception";
  } catch (std::system_error const& e) {
    EXPECT_EQ(e.code(), std::errc::io_error);
  }
  kp.close_write();
  EXPECT_EQ(read_all(kp.read_fd), "partial");
}

TEST_P(PumpIntoFd, WaitsForANonBlockingFdToDrain) {
  kernel_pipe kp(O_NONBLOCK);
  auto [r, w] = make_pipe({.capacity = 1 << 20});
  std::string const data = pattern(1 << 20);  // more than the kernel pipe holds
  w.write(data);
  w.close();
  auto pumped = std::async(std::launch::async, [&, r = std::move(r)]() mutable {
    std::uint64_t n = pump(r, kp.write_fd);
    kp.close_write();
    return n;
  });
  int flags = ::fcntl(kp.read_fd, F_GETFL);
  ::fcntl(kp.read_fd, F_SETFL, flags & ~O_NONBLOCK);
  EXPECT_EQ(read_all(kp.read_fd), data);
  EXPECT_EQ(get_within(pumped), data.size());
}

INSTANTIATE_TEST_SUITE_P(Modes, PumpFromFd, modes, mode_name);
INSTANTIATE_TEST_SUITE_P(Modes, PumpIntoFd, modes, mode_name);
