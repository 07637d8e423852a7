// The promises of userpipe/process.hpp: a child's stdio through userpipe
// ends. USERPIPE_PROCESS_MIB sizes the echo test (default 100),
// USERPIPE_SPAWNS the descriptor-leak loop (default 1000).
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <future>
#include <sstream>
#include <string>
#include <thread>
#include <userpipe/process.hpp>
#include <vector>

#include "support/get_within.hpp"

using namespace std::chrono_literals;
using userpipe::spawn;
using userpipe::stdio;

namespace {

std::size_t env_or(char const* name, std::size_t fallback) {
  char const* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

std::size_t open_descriptors() {
  std::size_t n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n - 1;  // the directory stream's own descriptor
}

std::string read_all(userpipe::reader& r, std::error_code& ec) {
  std::string out, buf(65536, '\0');
  while (std::size_t n = r.read_some({reinterpret_cast<std::byte*>(buf.data()), buf.size()}, ec))
    out.append(buf, 0, n);
  return out;
}

std::string read_all(userpipe::reader& r) {
  std::error_code ec;
  std::string s = read_all(r, ec);
  EXPECT_FALSE(ec) << ec.message();
  return s;
}

using userpipe_support::get_within;

/// Deterministic bytes, regenerable in chunks on the checking side.
struct byte_stream {
  std::uint64_t x = 0x9e3779b97f4a7c15;
  void fill(std::span<std::byte> out) {
    for (auto& b : out) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      b = static_cast<std::byte>(x);
    }
  }
};

}  // namespace

TEST(Spawn, CatEchoesEveryByteExactly) {
  std::size_t const total = env_or("USERPIPE_PROCESS_MIB", 100) << 20;
  auto c = spawn({"cat"}, {.in = stdio::pipe, .out = stdio::pipe});
  auto producer = std::async(std::launch::async, [&, w = std::move(c.in())]() mutable {
    byte_stream gen;
    std::vector<std::byte> chunk(100003);  // odd size: chunks straddle the ring's wrap
    for (std::size_t done = 0; done < total;) {
      std::size_t const n = std::min(chunk.size(), total - done);
      gen.fill({chunk.data(), n});
      w.write({chunk.data(), n});
      done += n;
    }
    w.close();
  });
  auto checker = std::async(std::launch::async, [&, r = std::move(c.out())]() mutable {
    byte_stream gen;
    std::vector<std::byte> expected;
    std::size_t got = 0;
    bool same = true;
    for (;;) {
      auto data = r.peek();
      if (data.empty()) break;
      expected.resize(data.size());
      gen.fill(expected);
      same = same && std::equal(data.begin(), data.end(), expected.begin());
      got += data.size();
      r.consume(data.size());
    }
    return std::pair(got, same);
  });
  auto [got, same] = get_within(checker);
  EXPECT_EQ(got, total);
  EXPECT_TRUE(same);
  get_within(producer);
  EXPECT_TRUE(c.wait().success());
}

TEST(Spawn, ClosingStdoutReaderKillsWriterWithSigpipeLikeYesPipeHead) {
  auto c = spawn({"yes"}, {.out = stdio::pipe});
  std::string line;
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(c.out().read_line(line));
    EXPECT_EQ(line, "y");
  }
  c.out().close();
  auto status = std::async(std::launch::async, [&] { return c.wait(); });
  auto s = get_within(status);
  EXPECT_TRUE(s.signaled());
  EXPECT_EQ(s.signal, SIGPIPE);
}

TEST(Spawn, WriterToChildThatStoppedReadingGetsBrokenPipe) {
  auto c = spawn({"head", "-c", "1000"}, {.in = stdio::pipe, .out = stdio::null});
  auto writer = std::async(std::launch::async, [w = std::move(c.in())]() mutable {
    std::string const block(4096, 'x');
    std::size_t written = 0;
    std::error_code ec;
    while (!ec) written += w.write(block, ec);
    return std::pair(written, ec);
  });
  auto [written, ec] = get_within(writer);
  EXPECT_EQ(ec, std::errc::broken_pipe);
  EXPECT_GE(written, 1000u);
  EXPECT_TRUE(c.wait().success());
}

TEST(Spawn, MissingProgramThrowsWithErrno) {
  std::size_t const before = open_descriptors();
  for (auto const& name : {"/nonexistent/userpipe-no-such-program", "userpipe-no-such-program"}) {
    try {
      spawn({name}, {.in = stdio::pipe, .out = stdio::pipe, .err = stdio::pipe});
      ADD_FAILURE() << name << ": no exception";
    } catch (std::system_error const& e) {
      EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory) << name;
    }
  }
  std::error_code ec;
  auto c = spawn({"/nonexistent/x"}, {}, ec);
  EXPECT_EQ(ec, std::errc::no_such_file_or_directory);
  EXPECT_EQ(c.pid(), -1);
  EXPECT_EQ(open_descriptors(), before);
}

TEST(Spawn, EmptyArgvIsInvalidArgument) {
  std::error_code ec;
  spawn({}, {}, ec);
  EXPECT_EQ(ec, std::errc::invalid_argument);
}

TEST(Spawn, ChildKilledMidStreamGivesEofAndSignalStatus) {
  auto c = spawn({"yes", "mid-stream"}, {.out = stdio::pipe});
  std::string line;
  ASSERT_TRUE(c.out().read_line(line));
  c.kill(SIGKILL);
  auto drained = std::async(std::launch::async, [&] {
    std::error_code ec;
    read_all(c.out(), ec);
    return ec;
  });
  EXPECT_FALSE(get_within(drained));  // plain EOF, after whatever was in flight
  auto s = c.wait();
  EXPECT_EQ(s.signal, SIGKILL);
  EXPECT_EQ(s.code, -1);
}

TEST(Spawn, ExitCodeIsReported) {
  auto c = spawn({"sh", "-c", "exit 3"});
  auto s = c.wait();
  EXPECT_TRUE(s.exited());
  EXPECT_EQ(s.code, 3);
  EXPECT_EQ(c.wait(), s);     // again: the same status
  EXPECT_NO_THROW(c.kill());  // after wait: does nothing
}

TEST(Spawn, StdioNullGivesEofAndPipesCarryStdoutAndStderrApart) {
  auto c = spawn({"sh", "-c", "cat; echo out; echo err >&2"},
                 {.in = stdio::null, .out = stdio::pipe, .err = stdio::pipe});
  auto err = std::async(std::launch::async, [r = std::move(c.err())]() mutable { return read_all(r); });
  EXPECT_EQ(read_all(c.out()), "out\n");
  EXPECT_EQ(get_within(err), "err\n");
  EXPECT_TRUE(c.wait().success());
}

TEST(Spawn, EnvironmentAndWorkingDirectoryAreTheChilds) {
  auto c = spawn({"/bin/sh", "-c", "echo $USERPIPE_X; pwd"},
                 {.out = stdio::pipe,
                  .environment = std::vector<std::string>{"USERPIPE_X=42"},
                  .working_directory = "/"});
  EXPECT_EQ(read_all(c.out()), "42\n/\n");
  EXPECT_TRUE(c.wait().success());
}

TEST(Spawn, ChildSeesOnlyDescriptorsZeroToTwo) {
  // A descriptor someone left inheritable must not reach the child either.
  int leaky = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(leaky, 0);
  auto c = spawn({"ls", "-l", "/proc/self/fd/"}, {.in = stdio::pipe, .out = stdio::pipe, .err = stdio::pipe});
  std::istringstream listing(read_all(c.out()));
  EXPECT_TRUE(c.wait().success());
  ::close(leaky);
  std::vector<int> fds;
  std::string line;
  while (std::getline(listing, line)) {
    auto arrow = line.find(" -> ");
    if (arrow == std::string::npos) continue;  // "total 0"
    auto name_start = line.rfind(' ', arrow - 1) + 1;
    int fd = std::stoi(line.substr(name_start, arrow - name_start));
    std::string target = line.substr(arrow + 4);
    // ls's own directory stream is the one descriptor above 2 it may show.
    if (fd > 2 && target.starts_with("/proc/") && target.ends_with("/fd")) continue;
    fds.push_back(fd);
  }
  EXPECT_EQ(fds, (std::vector<int>{0, 1, 2}));
}

TEST(Spawn, NoDescriptorLeaksOverManySpawns) {
  std::size_t const spawns = env_or("USERPIPE_SPAWNS", 1000);
  std::size_t const before = open_descriptors();
  for (std::size_t i = 0; i < spawns; ++i) {
    auto c = spawn({"true"}, {.in = stdio::pipe, .out = stdio::pipe, .err = stdio::pipe});
    c.in().close();
    std::error_code ec;
    read_all(c.out(), ec);
    ASSERT_TRUE(c.wait().success());
  }
  EXPECT_EQ(open_descriptors(), before);
}

TEST(Spawn, DestroyingHandleKillsAndReapsRunningChild) {
  pid_t pid;
  userpipe::reader out;
  {
    auto c = spawn({"sleep", "1000"}, {.out = stdio::pipe});
    pid = c.pid();
    out = std::move(c.out());
  }
  EXPECT_NE(::kill(pid, 0), 0);  // reaped: no such process (or a zombie-free reuse)
  std::error_code ec;
  EXPECT_EQ(read_all(out, ec), "");
  EXPECT_FALSE(ec);
}

TEST(Spawn, DestroyingHandleStopsPumpsEvenIfAGrandchildHoldsStdout) {
  // The grandchild keeps the stdout pipe open after the child dies, so the
  // pump never sees EOF: the handle must cut the stream, not hang.
  userpipe::reader out;
  std::string grandchild;
  auto done = std::async(std::launch::async, [&] {
    auto c = spawn({"sh", "-c", "sleep 30 & echo $!; wait"}, {.out = stdio::pipe});
    EXPECT_TRUE(c.out().read_line(grandchild));
    out = std::move(c.out());
  });
  get_within(done);
  std::error_code ec;
  read_all(out, ec);
  EXPECT_EQ(ec, std::errc::operation_canceled);
  ::kill(std::stoi(grandchild), SIGKILL);
}

TEST(Spawn, WriterKeptAfterHandleIsGoneGetsBrokenPipe) {
  userpipe::writer in;
  auto done = std::async(std::launch::async, [&] {
    auto c = spawn({"sleep", "1000"}, {.in = stdio::pipe});
    in = std::move(c.in());
  });
  get_within(done);
  std::error_code ec;
  in.write("late", ec);
  EXPECT_EQ(ec, std::errc::broken_pipe);
}

TEST(Spawn, DestroyingHandleWithUnreadOutputDoesNotHang) {
  auto done = std::async(std::launch::async, [] {
    auto c = spawn({"yes"}, {.out = stdio::pipe, .err = stdio::pipe});
    std::string line;
    EXPECT_TRUE(c.out().read_line(line));  // running, and soon blocked on a full ring
    return c.pid();
  });
  pid_t pid = get_within(done);
  EXPECT_NE(::kill(pid, 0), 0);
}
