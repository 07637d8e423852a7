// The promises of userpipe/fd.hpp: pumps between a descriptor and a ring.
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

using userpipe_support::get_within;
using userpipe_support::current_syscall;
using userpipe_support::wait_until;

}  // namespace

TEST(PumpFromFd, DeliversEveryByteThenEof) {
  kernel_pipe kp;
  auto [r, w] = make_pipe({.capacity = 4096});
  std::string const data = pattern(3 << 20);
  auto feeder = std::async(std::launch::async, [&] {
    write_all(kp.write_fd, data);
    kp.close_write();
  });
  auto pumped = std::async(std::launch::async,
                           [&, w = std::move(w)]() mutable { return userpipe::pump(kp.read_fd, w); });
  std::error_code ec;
  EXPECT_EQ(read_all(r, ec), data);
  EXPECT_FALSE(ec);
  EXPECT_EQ(get_within(pumped), data.size());
  feeder.get();
}

TEST(PumpFromFd, WaitsForANonBlockingFdInsteadOfFailing) {
  kernel_pipe kp(O_NONBLOCK);
  auto [r, w] = make_pipe();
  auto pumped = std::async(std::launch::async,
                           [&, w = std::move(w)]() mutable { return userpipe::pump(kp.read_fd, w); });
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

TEST(PumpFromFd, ReadErrorClosesWriterWithThatErrorAfterTheBytes) {
  // A descriptor open for writing only: read(2) fails with EBADF.
  int fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto [r, w] = make_pipe();
  w.write("before");
  std::error_code ec;
  EXPECT_EQ(userpipe::pump(fd, w, ec), 0u);
  EXPECT_EQ(ec, std::errc::bad_file_descriptor);
  std::error_code read_ec;
  EXPECT_EQ(read_all(r, read_ec), "before");
  EXPECT_EQ(read_ec, std::errc::bad_file_descriptor);
  ::close(fd);
}

TEST(PumpFromFd, ReaderGoneEndsWithBrokenPipeAndLeavesFdOpen) {
  kernel_pipe kp;
  auto [r, w] = make_pipe();
  r.close();
  write_all(kp.write_fd, "unread");
  try {
    userpipe::pump(kp.read_fd, w);
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

TEST(PumpFromFd, RetriesInterruptedReads) {
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
    return userpipe::pump(kp.read_fd, w);
  });
  auto const [pumper, tid] = self.get_future().get();
  // Each signal goes in only once the pump is blocked in read(2) on the
  // empty pipe, so each one really interrupts a read: the pump must retry.
  for (int i = 0; i < 5; ++i) {
    auto ended = [&pumped] { return pumped.wait_for(0s) == std::future_status::ready; };
    ASSERT_TRUE(wait_until([&, tid = tid] { return current_syscall(tid) == SYS_read || ended(); },
                           "the pump blocks in read(2)"));
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

TEST(PumpIntoFd, WritesEveryByteAndReturnsAtEofLeavingFdOpen) {
  kernel_pipe kp;
  auto [r, w] = make_pipe({.capacity = 8192});
  std::string const data = pattern(3 << 20);
  auto producer = std::async(std::launch::async, [&, w = std::move(w)]() mutable {
    w.write(data);
    w.close();
  });
  auto pumped = std::async(std::launch::async, [&, r = std::move(r)]() mutable {
    std::uint64_t n = userpipe::pump(r, kp.write_fd);
    kp.close_write();  // the fd is ours to close
    return n;
  });
  EXPECT_EQ(read_all(kp.read_fd), data);
  EXPECT_EQ(get_within(pumped), data.size());
  producer.get();
}

TEST(PumpIntoFd, NoReaderOnFdClosesReaderWithBrokenPipeAndProcessSurvivesSigpipe) {
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
  EXPECT_EQ(userpipe::pump(r, kp.write_fd, ec), 0u);
  EXPECT_EQ(ec, std::errc::broken_pipe);
  EXPECT_FALSE(r.is_open());
  std::error_code wec;
  w.write("more", wec);
  EXPECT_EQ(wec, std::errc::broken_pipe);
  ::sigaction(SIGPIPE, &old, nullptr);
}

TEST(PumpIntoFd, WriterCloseErrorEndsThePumpWithThatError) {
  kernel_pipe kp;
  auto [r, w] = make_pipe();
  w.write("partial");
  w.close(std::make_error_code(std::errc::io_error));
  try {
    userpipe::pump(r, kp.write_fd);
    ADD_FAILURE() << "no exception";
  } catch (std::system_error const& e) {
    EXPECT_EQ(e.code(), std::errc::io_error);
  }
  kp.close_write();
  EXPECT_EQ(read_all(kp.read_fd), "partial");
}

TEST(PumpIntoFd, WaitsForANonBlockingFdToDrain) {
  kernel_pipe kp(O_NONBLOCK);
  auto [r, w] = make_pipe({.capacity = 1 << 20});
  std::string const data = pattern(1 << 20);  // more than the kernel pipe holds
  w.write(data);
  w.close();
  auto pumped = std::async(std::launch::async, [&, r = std::move(r)]() mutable {
    std::uint64_t n = userpipe::pump(r, kp.write_fd);
    kp.close_write();
    return n;
  });
  int flags = ::fcntl(kp.read_fd, F_GETFL);
  ::fcntl(kp.read_fd, F_SETFL, flags & ~O_NONBLOCK);
  EXPECT_EQ(read_all(kp.read_fd), data);
  EXPECT_EQ(get_within(pumped), data.size());
}
