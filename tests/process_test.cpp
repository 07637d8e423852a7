// The promises of userpipe/process.hpp: a child's stdio through userpipe
// ends. USERPIPE_PROCESS_MIB sizes the echo test (default 100),
// USERPIPE_SPAWNS the descriptor-leak loop (default 1000).
//
// Every test runs in both pump modes: /threads (userpipe::spawn, a thread
// per stream) and /event_loop (userpipe::spawn(io, ...) from
// userpipe/asio_process.hpp, the pumps on one io_context thread shared by
// all children), since both promise the same behaviour.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <thread>
#include <userpipe/process.hpp>
#ifdef USERPIPE_TEST_EVENT_LOOP  // where standalone Asio is found
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <userpipe/asio_process.hpp>
#endif
#include <vector>

#include "support/get_within.hpp"

using namespace std::chrono_literals;
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

/// The descriptors open once the pumps have let go of theirs: at once in
/// thread mode (the handle joins its threads); in event-loop mode the pumps
/// close theirs on the loop after the handle has gone, so this waits
/// (bounded) for the count to come down to `expected`, then reports it.
std::size_t settled_descriptors(std::size_t expected) {
  for (int i = 0; i < 1000 && open_descriptors() > expected; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return open_descriptors();
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

enum class pump_mode { threads, event_loop };
pump_mode current_mode = pump_mode::threads;

#ifdef USERPIPE_TEST_EVENT_LOOP
/// The event loop of /event_loop: one io_context on one thread for the
/// whole run, as a server would have.
class event_loop : public ::testing::Environment {
 public:
  static asio::io_context& io() { return io_; }
  void SetUp() override {
    thread_ = std::thread([] { io_.run(); });
  }
  void TearDown() override {
    work_.reset();
    thread_.join();
  }

 private:
  static inline asio::io_context io_;
  static inline asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
  std::thread thread_;
};
[[maybe_unused]] auto* const loop_environment = ::testing::AddGlobalTestEnvironment(new event_loop);
#define USERPIPE_LOOP_SPAWN(...) userpipe::spawn(event_loop::io(), __VA_ARGS__)
auto const modes = ::testing::Values(pump_mode::threads, pump_mode::event_loop);
#else
#define USERPIPE_LOOP_SPAWN(...) userpipe::spawn(__VA_ARGS__)
auto const modes = ::testing::Values(pump_mode::threads);
#endif

/// spawn in the mode under test.
/// Lets the event loop run what earlier tests left queued (their pumps
/// closing descriptors): a few round trips through it.
void quiesce() {
#ifdef USERPIPE_TEST_EVENT_LOOP
  for (int i = 0; i < 20; ++i) {
    std::promise<void> done;
    asio::post(event_loop::io(), [&] { done.set_value(); });
    done.get_future().wait();
  }
#endif
}

userpipe::child start(std::vector<std::string> const& argv, userpipe::spawn_options const& opts,
                      std::error_code& ec) {
  if (current_mode == pump_mode::threads) return userpipe::spawn(argv, opts, ec);
  return USERPIPE_LOOP_SPAWN(argv, opts, ec);
}
userpipe::child start(std::vector<std::string> const& argv, userpipe::spawn_options const& opts = {}) {
  if (current_mode == pump_mode::threads) return userpipe::spawn(argv, opts);
  return USERPIPE_LOOP_SPAWN(argv, opts);
}

class Spawn : public ::testing::TestWithParam<pump_mode> {
 protected:
  void SetUp() override { current_mode = GetParam(); }
};
class Terminal : public Spawn {};

std::string mode_name(::testing::TestParamInfo<pump_mode> const& info) {
  return info.param == pump_mode::threads ? "threads" : "event_loop";
}

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

TEST_P(Spawn, CatEchoesEveryByteExactly) {
  std::size_t const total = env_or("USERPIPE_PROCESS_MIB", 100) << 20;
  auto c = start({"cat"}, {.in = stdio::pipe, .out = stdio::pipe});
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

TEST_P(Spawn, ClosingStdoutReaderKillsWriterWithSigpipeLikeYesPipeHead) {
  auto c = start({"yes"}, {.out = stdio::pipe});
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

TEST_P(Spawn, WriterToChildThatStoppedReadingGetsBrokenPipe) {
  auto c = start({"head", "-c", "1000"}, {.in = stdio::pipe, .out = stdio::null});
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

TEST_P(Spawn, MissingProgramThrowsWithErrno) {
  std::size_t const before = (quiesce(), open_descriptors());
  for (auto const& name : {"/nonexistent/userpipe-no-such-program", "userpipe-no-such-program"}) {
    try {
      start({name}, {.in = stdio::pipe, .out = stdio::pipe, .err = stdio::pipe});
      ADD_FAILURE() << name << ": no exception";
    } catch (std::system_error const& e) {
      EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory) << name;
    }
  }
  std::error_code ec;
  auto c = start({"/nonexistent/x"}, {}, ec);
  EXPECT_EQ(ec, std::errc::no_such_file_or_directory);
  EXPECT_EQ(c.pid(), -1);
  EXPECT_EQ(settled_descriptors(before), before);
}

TEST_P(Spawn, EmptyArgvIsInvalidArgument) {
  std::error_code ec;
  start({}, {}, ec);
  EXPECT_EQ(ec, std::errc::invalid_argument);
}

TEST_P(Spawn, ChildKilledMidStreamGivesEofAndSignalStatus) {
  auto c = start({"yes", "mid-stream"}, {.out = stdio::pipe});
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

TEST_P(Spawn, ExitCodeIsReported) {
  auto c = start({"sh", "-c", "exit 3"});
  auto s = c.wait();
  EXPECT_TRUE(s.exited());
  EXPECT_EQ(s.code, 3);
  EXPECT_EQ(c.wait(), s);     // again: the same status
  EXPECT_NO_THROW(c.kill());  // after wait: does nothing
}

TEST_P(Spawn, StdioNullGivesEofAndPipesCarryStdoutAndStderrApart) {
  auto c = start({"sh", "-c", "cat; echo out; echo err >&2"},
                 {.in = stdio::null, .out = stdio::pipe, .err = stdio::pipe});
  auto err = std::async(std::launch::async, [r = std::move(c.err())]() mutable { return read_all(r); });
  EXPECT_EQ(read_all(c.out()), "out\n");
  EXPECT_EQ(get_within(err), "err\n");
  EXPECT_TRUE(c.wait().success());
}

TEST_P(Spawn, EnvironmentAndWorkingDirectoryAreTheChilds) {
  auto c = start({"/bin/sh", "-c", "echo $USERPIPE_X; pwd"},
                 {.out = stdio::pipe,
                  .environment = std::vector<std::string>{"USERPIPE_X=42"},
                  .working_directory = "/"});
  EXPECT_EQ(read_all(c.out()), "42\n/\n");
  EXPECT_TRUE(c.wait().success());
}

TEST_P(Spawn, ChildSeesOnlyDescriptorsZeroToTwo) {
  // A descriptor someone left inheritable must not reach the child either.
  int leaky = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(leaky, 0);
  auto c = start({"ls", "-l", "/proc/self/fd/"}, {.in = stdio::pipe, .out = stdio::pipe, .err = stdio::pipe});
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

TEST_P(Spawn, NoDescriptorLeaksOverManySpawns) {
  std::size_t const spawns = env_or("USERPIPE_SPAWNS", 1000);
  std::size_t const before = (quiesce(), open_descriptors());
  for (std::size_t i = 0; i < spawns; ++i) {
    auto c = start({"true"}, {.in = stdio::pipe, .out = stdio::pipe, .err = stdio::pipe});
    c.in().close();
    std::error_code ec;
    read_all(c.out(), ec);
    ASSERT_TRUE(c.wait().success());
  }
  EXPECT_EQ(settled_descriptors(before), before);
}

TEST_P(Spawn, DestroyingHandleKillsAndReapsRunningChild) {
  pid_t pid;
  userpipe::reader out;
  {
    auto c = start({"sleep", "1000"}, {.out = stdio::pipe});
    pid = c.pid();
    out = std::move(c.out());
  }
  EXPECT_NE(::kill(pid, 0), 0);  // reaped: no such process (or a zombie-free reuse)
  // The moved-out reader ends as process.hpp says: EOF, or operation_canceled
  // if the handle cut the stream before its pump saw the hang-up (a cancel
  // wins over a descriptor that is ready at the same time).
  std::error_code ec;
  EXPECT_EQ(read_all(out, ec), "");
  EXPECT_TRUE(!ec || ec == std::errc::operation_canceled) << ec.message();
}

TEST_P(Spawn, DestroyingHandleStopsPumpsEvenIfAGrandchildHoldsStdout) {
  // The grandchild keeps the stdout pipe open after the child dies, so the
  // pump never sees EOF: the handle must cut the stream, not hang.
  userpipe::reader out;
  std::string grandchild;
  auto done = std::async(std::launch::async, [&] {
    auto c = start({"sh", "-c", "sleep 30 & echo $!; wait"}, {.out = stdio::pipe});
    EXPECT_TRUE(c.out().read_line(grandchild));
    out = std::move(c.out());
  });
  get_within(done);
  std::error_code ec;
  read_all(out, ec);
  EXPECT_EQ(ec, std::errc::operation_canceled);
  ::kill(std::stoi(grandchild), SIGKILL);
}

TEST_P(Spawn, WriterKeptAfterHandleIsGoneGetsBrokenPipe) {
  userpipe::writer in;
  auto done = std::async(std::launch::async, [&] {
    auto c = start({"sleep", "1000"}, {.in = stdio::pipe});
    in = std::move(c.in());
  });
  get_within(done);
  // Thread mode: at once (the handle joined its pumps). Event-loop mode: once
  // the loop has run the stop the handle asked for, so write until then.
  auto writes = std::async(std::launch::async, [&] {
    std::error_code ec;
    while (!ec) {
      in.write("late", ec);
      if (!ec) std::this_thread::sleep_for(1ms);
    }
    return ec;
  });
  EXPECT_EQ(get_within(writes), std::errc::broken_pipe);
}

TEST_P(Spawn, DestroyingHandleWithUnreadOutputDoesNotHang) {
  auto done = std::async(std::launch::async, [] {
    auto c = start({"yes"}, {.out = stdio::pipe, .err = stdio::pipe});
    std::string line;
    EXPECT_TRUE(c.out().read_line(line));  // running, and soon blocked on a full ring
    return c.pid();
  });
  pid_t pid = get_within(done);
  EXPECT_NE(::kill(pid, 0), 0);
}

// ---- children on a pseudo-terminal -------------------------------------------

namespace {

constexpr userpipe::terminal_size default_terminal{.rows = 24, .cols = 80};

/// Reads the terminal's output until `needle` has appeared; returns all of it.
std::string read_until(userpipe::reader& out, std::string const& needle) {
  auto f = std::async(std::launch::async, [&] {
    std::string seen, buf(4096, '\0');
    std::error_code ec;
    while (seen.find(needle) == std::string::npos) {
      std::size_t n = out.read_some({reinterpret_cast<std::byte*>(buf.data()), buf.size()}, ec);
      if (n == 0) break;
      seen.append(buf, 0, n);
    }
    return seen;
  });
  return get_within(f);
}

/// The children of `pid` (Linux's /proc/PID/task/PID/children).
std::vector<pid_t> children_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  std::vector<pid_t> out;
  for (pid_t p; in >> p;) out.push_back(p);
  return out;
}

/// True once `pid` runs `comm` as the foreground job of its terminal
/// (/proc/PID/stat: its process group is the terminal's foreground group).
bool is_foreground(pid_t pid, std::string const& comm) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  auto open = line.find('('), close = line.rfind(')');
  if (open == std::string::npos || close == std::string::npos) return false;
  std::istringstream rest(line.substr(close + 1));
  char state;
  long ppid, pgrp, session, tty, tpgid;
  if (!(rest >> state >> ppid >> pgrp >> session >> tty >> tpgid)) return false;
  return line.substr(open + 1, close - open - 1) == comm && pgrp == tpgid;
}

}  // namespace

TEST_P(Terminal, ShellComputesThroughThePty) {
  auto c = start({"sh"}, {.terminal = default_terminal});
  c.in().write("echo $((6*7))\n");
  EXPECT_NE(read_until(c.out(), "42\r\n").find("42\r\n"), std::string::npos) << "ONLCR: the tty's newline";
  c.in().write("exit\n");
  std::error_code ec;
  read_all(c.out(), ec);
  EXPECT_FALSE(ec) << "EOF, not EIO: " << ec.message();
  EXPECT_TRUE(c.wait().success());
}

TEST_P(Terminal, ChildIsASessionLeaderOnItsControllingTerminal) {
  auto c = start({"sh", "-c",
                  "read -r _ _ _ _ _ sid _ </proc/$$/stat; [ \"$sid\" = $$ ] && echo leader; "
                  "tty; test -t 0 && test -t 1 && test -t 2 && echo all-ttys; exec </dev/tty && echo ctty"},
                 {.terminal = default_terminal});
  std::error_code ec;
  std::string const out = read_all(c.out(), ec);
  EXPECT_TRUE(c.wait().success()) << out;
  EXPECT_NE(out.find("leader\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("/dev/pts/"), std::string::npos) << out;
  EXPECT_NE(out.find("all-ttys\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("ctty\r\n"), std::string::npos) << "/dev/tty opens: it has a controlling terminal";
}

TEST_P(Terminal, ResizeIsSeenByStty) {
  auto c = start({"sh"}, {.terminal = userpipe::terminal_size{.rows = 24, .cols = 80}});
  c.in().write("stty size\n");
  EXPECT_NE(read_until(c.out(), "24 80\r\n").find("24 80\r\n"), std::string::npos);
  c.resize(40, 132);
  c.in().write("stty size\n");
  EXPECT_NE(read_until(c.out(), "40 132\r\n").find("40 132\r\n"), std::string::npos);
  c.in().write("exit\n");
  EXPECT_TRUE(c.wait().success());
}

TEST_P(Terminal, ResizeSendsSigwinchToTheForegroundJob) {
  auto c = start({"sh", "-c", "trap 'echo winch; exit 0' WINCH; echo ready; while :; do sleep 0.01; done"},
                 {.terminal = default_terminal});
  read_until(c.out(), "ready\r\n");
  c.resize(30, 90);
  EXPECT_NE(read_until(c.out(), "winch\r\n").find("winch\r\n"), std::string::npos);
  EXPECT_TRUE(c.wait().success());
}

TEST_P(Terminal, ResizeWithoutTerminalIsEnotty) {
  auto c = start({"true"});
  std::error_code ec;
  c.resize(10, 10, ec);
  EXPECT_EQ(ec, std::errc::inappropriate_io_control_operation);
  EXPECT_TRUE(c.wait().success());
}

TEST_P(Terminal, CtrlCInterruptsTheForegroundJobAndTheShellSurvives) {
  auto c = start({"sh", "-i"}, {.terminal = default_terminal});
  c.in().write("sleep 100\n");
  // Wait (bounded) until sleep runs as the terminal's foreground job. Before
  // that (forked, not yet exec'd, or not yet given the terminal) the 0x03
  // may reach only the shell, and the test then waited out all 100 s.
  auto sleeper = std::async(std::launch::async, [&] {
    for (;;) {
      for (pid_t p : children_of(c.pid()))
        if (is_foreground(p, "sleep")) return p;
      std::this_thread::sleep_for(10ms);
    }
  });
  pid_t const sleep_pid = get_within(sleeper);
  c.in().write("\x03");
  c.in().write("echo alive-$((2+3))\n");
  EXPECT_NE(read_until(c.out(), "alive-5\r\n").find("alive-5\r\n"), std::string::npos);
  EXPECT_TRUE(children_of(c.pid()).empty()) << "sleep " << sleep_pid << " was interrupted and reaped";
  c.in().write("exit 0\n");
  EXPECT_TRUE(c.wait().success()) << "the shell survived the Ctrl-C";
}

TEST_P(Terminal, ExitGivesEofAndStatusWhileInIsStillOpen) {
  auto c = start({"sh", "-c", "echo bye; exit 3"}, {.terminal = default_terminal});
  std::error_code ec;
  std::string const out = read_all(c.out(), ec);  // in() stays open throughout
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_NE(out.find("bye\r\n"), std::string::npos);
  EXPECT_EQ(c.wait().code, 3);
  // The hang-up reached the keystroke side too: in() fails like a pipe whose
  // reader is gone (bounded: the pump notices the hang-up).
  auto writes = std::async(std::launch::async, [&] {
    std::error_code wec;
    while (!wec) (void)c.in().write_some(std::as_bytes(std::span("x", 1)), wec);
    return wec;
  });
  EXPECT_EQ(get_within(writes), std::errc::broken_pipe);
}

TEST_P(Terminal, LastBytesBeforeExitArriveBeforeEof) {
  // Many bytes right before the exit: EIO on the master comes only after them.
  auto c =
      start({"sh", "-c", "head -c 300000 /dev/zero | tr '\\0' a; exit 0"}, {.terminal = default_terminal});
  std::error_code ec;
  std::string const out = read_all(c.out(), ec);
  EXPECT_FALSE(ec);
  EXPECT_EQ(std::count(out.begin(), out.end(), 'a'), 300000);
  EXPECT_TRUE(c.wait().success());
}

TEST_P(Terminal, ChildSeesOnlyTheTerminalAsZeroToTwo) {
  auto c = start({"ls", "-l", "/proc/self/fd/"}, {.terminal = default_terminal});
  std::error_code ec;
  std::istringstream listing(read_all(c.out(), ec));
  EXPECT_TRUE(c.wait().success());
  std::vector<int> fds;
  std::string line;
  while (std::getline(listing, line)) {
    auto arrow = line.find(" -> ");
    if (arrow == std::string::npos) continue;
    auto name_start = line.rfind(' ', arrow - 1) + 1;
    int fd = std::stoi(line.substr(name_start, arrow - name_start));
    std::string target = line.substr(arrow + 4);
    if (fd > 2 && target.find("/proc/") != std::string::npos) continue;  // ls's directory stream
    EXPECT_NE(target.find("/dev/pts/"), std::string::npos) << line;
    fds.push_back(fd);
  }
  EXPECT_EQ(fds, (std::vector<int>{0, 1, 2}));
}

TEST_P(Terminal, NoDescriptorLeftAndNoZombie) {
  std::size_t const before = (quiesce(), open_descriptors());
  std::vector<pid_t> pids;
  for (int i = 0; i < 50; ++i) {
    auto c = start({"true"}, {.terminal = default_terminal});
    pids.push_back(c.pid());
    std::error_code ec;
    read_all(c.out(), ec);
    ASSERT_TRUE(c.wait().success());
  }
  {
    auto running = start({"sh", "-i"}, {.terminal = default_terminal});
    pids.push_back(running.pid());
  }  // destroyed running: killed and reaped
  EXPECT_EQ(settled_descriptors(before), before);
  for (pid_t p : pids) EXPECT_NE(::kill(p, 0), 0) << p << " is gone, not a zombie";
}

TEST_P(Terminal, MissingProgramThrowsWithErrno) {
  std::size_t const before = (quiesce(), open_descriptors());
  try {
    start({"/nonexistent/userpipe-no-such-program"}, {.terminal = default_terminal});
    ADD_FAILURE() << "no exception";
  } catch (std::system_error const& e) {
    EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
  }
  EXPECT_EQ(settled_descriptors(before), before);
}

TEST_P(Terminal, PtmxFailureIsASystemErrorWithItsErrno) {
  // Out of descriptors, /dev/ptmx cannot be opened: in a forked process, so
  // that the limit hurts nobody else.
  pid_t const pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int const lowest = ::dup(0);
    ::close(lowest);
    rlimit const lim{static_cast<rlim_t>(lowest), static_cast<rlim_t>(lowest)};
    if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) ::_exit(2);
    std::error_code ec;
    auto c = start({"true"}, {.terminal = default_terminal}, ec);
    ::_exit(ec == std::errc::too_many_files_open && c.pid() == -1 ? 0 : 1);
  }
  int raw = 0;
  ASSERT_EQ(::waitpid(pid, &raw, 0), pid);
  ASSERT_TRUE(WIFEXITED(raw));
  EXPECT_EQ(WEXITSTATUS(raw), 0) << "spawn reported EMFILE from posix_openpt";
}

#ifdef USERPIPE_TEST_EVENT_LOOP
TEST(EventLoop, ManyChildrenStartNoThread) {
  auto threads = [] {
    std::size_t n = 0;
    DIR* d = ::opendir("/proc/self/task");
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
    return n;
  };
  std::size_t const before = threads();
  std::vector<userpipe::child> children;
  for (int i = 0; i < 200; ++i)
    children.push_back(userpipe::spawn(event_loop::io(), {"cat"}, {.in = stdio::pipe, .out = stdio::pipe}));
  EXPECT_EQ(threads(), before) << "200 children, 400 pumps, no thread";
  for (std::size_t i = 0; i < children.size(); ++i) {
    children[i].in().write("child " + std::to_string(i) + "\n");
    children[i].in().close();
  }
  for (std::size_t i = 0; i < children.size(); ++i) {
    std::string line;
    ASSERT_TRUE(children[i].out().read_line(line));
    EXPECT_EQ(line, "child " + std::to_string(i));
    EXPECT_TRUE(children[i].wait().success());
  }
}

#endif

INSTANTIATE_TEST_SUITE_P(Modes, Spawn, modes, mode_name);
INSTANTIATE_TEST_SUITE_P(Modes, Terminal, modes, mode_name);

#ifdef USERPIPE_TEST_EVENT_LOOP
TEST_P(Spawn, AsyncWaitExitReportsTheStatusWithoutBlockingTheLoop) {
  auto c = start({"sh", "-c", "read x; exit 7"}, {.in = stdio::pipe});
  std::promise<std::pair<std::error_code, userpipe::exit_status>> got;
  userpipe::async_wait_exit(event_loop::io(), c, [&](std::error_code ec, userpipe::exit_status s) {
    got.set_value({ec, s});
  });
  auto f = got.get_future();
  c.in().write("go\n");
  auto [ec, status] = get_within(f);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_EQ(status.code, 7);
  EXPECT_EQ(c.wait().code, 7) << "wait() afterwards: the same status";
}

TEST_P(Terminal, AsyncWaitExitSeesTheShellsExitStatus) {
  auto c = start({"sh"}, {.terminal = default_terminal});
  std::promise<userpipe::exit_status> got;
  userpipe::async_wait_exit(event_loop::io(), c,
                            [&](std::error_code, userpipe::exit_status s) { got.set_value(s); });
  c.in().write("exit 3\n");
  auto f = got.get_future();
  EXPECT_EQ(get_within(f).code, 3);
}
#endif
