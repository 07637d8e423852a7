// Proxies an interactive child on a pseudo-terminal, the way an orchestrator
// proxies `lxc-attach` to a websocket or a log without giving up its own
// process: keys in from one side, the child's screen out to the other, and
// the exit status at the end. One Asio event loop, no thread.
//
//   terminal_proxy [COMMAND [ARGS...]]      (default: sh)
//
// Here "the other side" is this program's own stdin and stdout, which must
// be descriptors the loop can poll (a terminal, pipe or socket; not a file).
// On a terminal, stdin is put in raw mode while the child runs, so that
// every key, Ctrl-C included, reaches the child as typed, and the child's
// pty does the echo and line editing; a resize of this terminal is passed
// on. End-of-file on stdin is typed to the child as ^D.
//
// The child's exit is seen at once, whatever the input side is doing: its
// terminal hangs up, so the screen output ends after its last byte, and
// async_wait_exit gives the status; then the proxy stops reading stdin and
// prints "exit N" (or "killed by signal N").
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/signal_set.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <iostream>
#include <optional>
#include <string>
#include <userpipe/asio_process.hpp>
#include <vector>

namespace {

using asio::awaitable;
constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

/// The size of this process's terminal, or 24x80 when it has none.
userpipe::terminal_size window_size() {
  winsize ws{};
  if (::ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0) return {ws.ws_row, ws.ws_col};
  return {};
}

/// Raw mode on this process's terminal while it lives. It also puts back
/// the flags of stdin and stdout, which the loop makes non-blocking: both
/// are shared with the shell that started us.
class raw_terminal {
 public:
  raw_terminal() : in_flags_(::fcntl(STDIN_FILENO, F_GETFL)), out_flags_(::fcntl(STDOUT_FILENO, F_GETFL)) {
    if (::tcgetattr(STDIN_FILENO, &saved_) != 0) return;  // not a terminal
    termios raw = saved_;
    ::cfmakeraw(&raw);
    tty_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  ~raw_terminal() {
    if (tty_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
    ::fcntl(STDIN_FILENO, F_SETFL, in_flags_);
    ::fcntl(STDOUT_FILENO, F_SETFL, out_flags_);
  }
  raw_terminal(raw_terminal const&) = delete;
  raw_terminal& operator=(raw_terminal const&) = delete;

 private:
  int in_flags_, out_flags_;
  termios saved_{};
  bool tty_ = false;
};

/// Our stdin to the child's terminal, as it comes; at its end a ^D.
/// Returns when the child can no longer take keys or `keyboard` is closed.
awaitable<void> type_keys(asio::posix::stream_descriptor& keyboard, userpipe::async_writer& keys) {
  char buf[4096];
  for (;;) {
    auto [ec, n] = co_await keyboard.async_read_some(asio::buffer(buf), use_tuple);
    if (ec == asio::error::eof) {
      co_await asio::async_write(keys, asio::buffer("\x04", 1), use_tuple);
      co_return;
    }
    if (ec) co_return;
    auto [wec, written] = co_await asio::async_write(keys, asio::buffer(buf, n), use_tuple);
    if (wec) co_return;  // broken_pipe: the child has gone
  }
}

/// Passes each resize of our terminal on to the child's.
awaitable<void> follow_resizes(asio::signal_set& winch, userpipe::child& child) {
  for (;;) {
    auto [ec, signal] = co_await winch.async_wait(use_tuple);
    if (ec) co_return;
    userpipe::terminal_size const size = window_size();
    std::error_code ignored;
    child.resize(size.rows, size.cols, ignored);
  }
}

/// The child's screen to our stdout until its terminal hangs up, then its
/// exit status; then the other two coroutines are told to end.
awaitable<void> screen_then_exit(userpipe::child& child, userpipe::async_reader& screen,
                                 asio::posix::stream_descriptor& display,
                                 asio::posix::stream_descriptor& keyboard, asio::signal_set& winch,
                                 userpipe::exit_status& status) {
  std::error_code ignored;
  auto [pec, bytes] = co_await userpipe::async_pump(screen, display, use_tuple);
  if (pec) child.kill(SIGHUP, ignored);  // nobody reads our stdout: hang up, as a closed terminal window does
  auto [ec, s] = co_await userpipe::async_wait_exit(co_await asio::this_coro::executor, child, use_tuple);
  status = s;
  keyboard.close(ignored);
  winch.cancel(ignored);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> command(argv + 1, argv + argc);
  if (command.empty()) command = {"sh"};

  userpipe::exit_status status;
  try {
    asio::io_context io;
    userpipe::child child = userpipe::spawn(io, command, {.terminal = window_size()});
    userpipe::async_writer keys(io, std::move(child.in()));
    userpipe::async_reader screen(io, std::move(child.out()));
    asio::posix::stream_descriptor keyboard(io, ::dup(STDIN_FILENO)), display(io, ::dup(STDOUT_FILENO));
    asio::signal_set winch(io, SIGWINCH);

    raw_terminal raw;
    asio::co_spawn(io, type_keys(keyboard, keys), asio::detached);
    asio::co_spawn(io, follow_resizes(winch, child), asio::detached);
    asio::co_spawn(io, screen_then_exit(child, screen, display, keyboard, winch, status), asio::detached);
    io.run();  // returns once the child has exited and all it printed is out
  } catch (std::system_error const& e) {
    std::cerr << command[0] << ": " << e.what() << '\n';
    return 127;
  }
  if (status.exited())
    std::cout << "exit " << status.code << std::endl;
  else
    std::cout << "killed by signal " << status.signal << std::endl;
  return status.exited() ? status.code : 128 + status.signal;
}
