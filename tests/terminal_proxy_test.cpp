// examples/terminal_proxy end to end: the proxy is a child whose stdin,
// stdout and stderr are pipes, so its own input side stays idle for as
// long as the test likes. The proxy is killed and reaped on every path.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <future>
#include <string>
#include <userpipe/process.hpp>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct proxy_result {
  userpipe::exit_status status;
  std::string out, err;
};

std::string read_all(userpipe::reader r) {
  std::string all, buf(4096, '\0');
  std::error_code ec;
  while (std::size_t n = r.read_some({reinterpret_cast<std::byte*>(buf.data()), buf.size()}, ec))
    all.append(buf, 0, n);
  return all;
}

/// Runs the proxy with `command`, writes `input` to its stdin, and closes
/// its stdin only if `close_input`. Then waits for its output to end and
/// reaps it; a proxy that has not finished in two minutes (only a hang
/// takes that long) is killed and fails the test.
proxy_result run_proxy(std::vector<std::string> command, std::string const& input, bool close_input) {
  command.insert(command.begin(), USERPIPE_TERMINAL_PROXY_EXAMPLE);
  auto c = userpipe::spawn(
      command, {.in = userpipe::stdio::pipe, .out = userpipe::stdio::pipe, .err = userpipe::stdio::pipe});
  auto err = std::async(std::launch::async, read_all, std::move(c.err()));
  auto out = std::async(std::launch::async, read_all, std::move(c.out()));
  c.in().write(input);
  if (close_input) c.in().close();
  if (out.wait_for(120s) != std::future_status::ready) {
    ADD_FAILURE() << "the proxy did not finish: it did not see its child's exit";
    c.kill(SIGKILL);
  }
  proxy_result r;
  r.out = out.get();
  r.err = err.get();
  r.status = c.wait();
  return r;
}

bool ends_with(std::string const& s, std::string const& end) {
  return s.size() >= end.size() && s.compare(s.size() - end.size(), end.size(), end) == 0;
}

TEST(TerminalProxy, ChildExitIsSeenAtOnceWithItsStatusWhileInputIsIdle) {
  // The proxy's stdin stays open and silent after the command line.
  auto r = run_proxy({"sh"}, "echo $((6*7)); exit 3\n", false);
  EXPECT_NE(r.out.find("42\r\n"), std::string::npos) << r.out;  // a terminal's line end
  EXPECT_TRUE(ends_with(r.out, "exit 3\n")) << r.out;
  EXPECT_EQ(r.status, (userpipe::exit_status{.code = 3, .signal = 0})) << r.err;
}

TEST(TerminalProxy, ChildRunsOnATerminal) {
  auto r = run_proxy({"sh", "-c", "test -t 0 && test -t 1 && test -t 2 && stty size"}, "", false);
  EXPECT_NE(r.out.find("24 80\r\n"), std::string::npos)
      << r.out;  // the default size: the proxy has no terminal
  EXPECT_TRUE(ends_with(r.out, "exit 0\n")) << r.out;
  EXPECT_TRUE(r.status.success()) << r.err;
}

TEST(TerminalProxy, EndOfInputIsTypedAsEndOfFile) {
  auto r = run_proxy({"sh"}, "echo one\n", true);
  EXPECT_NE(r.out.find("one\r\n"), std::string::npos) << r.out;
  EXPECT_TRUE(ends_with(r.out, "exit 0\n")) << r.out;
  EXPECT_TRUE(r.status.success()) << r.err;
}

TEST(TerminalProxy, KilledChildIsReportedWithItsSignal) {
  auto r = run_proxy({"sh", "-c", "kill -TERM $$"}, "", false);
  EXPECT_TRUE(ends_with(r.out, "killed by signal 15\n")) << r.out;
  EXPECT_EQ(r.status.code, 128 + SIGTERM) << r.err;
}

TEST(TerminalProxy, MissingCommandIsReported) {
  auto r = run_proxy({"/nonexistent/command"}, "", false);
  EXPECT_EQ(r.status.code, 127);
  EXPECT_NE(r.err.find("/nonexistent/command"), std::string::npos) << r.err;
}

}  // namespace
