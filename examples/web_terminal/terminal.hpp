// examples/web_terminal/terminal.hpp — a child on a pseudo-terminal, seen
// from an event loop: read its screen, type into it, resize it, learn how
// it ended. Three ways to hold it, chosen with --pump:
//
//  - event: userpipe::boost_asio::spawn; the pty is pumped into rings on
//    the io_context itself (no thread per session). The default.
//  - thread: userpipe::spawn; a pump thread per direction moves the bytes
//    between the pty and the rings, the session reads the rings through
//    userpipe::boost_asio::async_reader/async_writer.
//  - kernel: no userpipe at all; the pty master is a stream_descriptor.
//    The baseline the benchmarks compare the other two against.
//
// All three are used from one io_context thread; none blocks it.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#if __has_include(<userpipe/boost_asio_process.hpp>)
#include <userpipe/boost_asio.hpp>
#include <userpipe/boost_asio_process.hpp>
#include <userpipe/process.hpp>
#define WEB_TERMINAL_HAS_USERPIPE_PTY 1
#endif

extern char** environ;

namespace web_terminal {

namespace net = boost::asio;
using error_code = boost::system::error_code;

enum class pump_mode { event, thread, kernel };

/// How a child ended: exit code, or the signal that killed it.
struct ending {
  int code = -1;
  int signal = 0;
};

inline std::optional<ending> decode_wait_status(int status) {
  if (WIFEXITED(status)) return ending{WEXITSTATUS(status), 0};
  if (WIFSIGNALED(status)) return ending{-1, WTERMSIG(status)};
  return std::nullopt;
}

/// This process's environment with TERM set for xterm.js.
inline std::vector<std::string> child_environment() {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e)
    if (std::string_view(*e).substr(0, 5) != "TERM=") env.emplace_back(*e);
  env.emplace_back("TERM=xterm-256color");
  return env;
}

/// One child on one pty. Used from the io_context's thread only.
class terminal {
 public:
  virtual ~terminal() = default;

  /// Screen output; eof (net::error::eof) after the last byte once the
  /// terminal has hung up.
  virtual net::awaitable<std::size_t> read_some(net::mutable_buffer buffer, error_code& ec) = 0;
  /// Keystrokes, all of `buffer` (waits while the terminal's input is
  /// full). Supports cancellation.
  virtual net::awaitable<void> write(net::const_buffer buffer, error_code& ec) = 0;
  virtual void resize(unsigned short rows, unsigned short cols) = 0;
  virtual pid_t pid() const = 0;
  /// waitpid(WNOHANG): the ending once the child has exited (reaps it).
  virtual std::optional<ending> try_reap() = 0;
  /// Stops reading the screen; a pending read_some completes.
  virtual void close_output() = 0;
  /// Sends `signal` to the child unless it has been reaped.
  virtual void signal(int signal) = 0;

  /// Waits until the child has exited and reaps it, without blocking the
  /// thread: a pidfd (Linux 5.3) becomes readable when the child exits.
  net::awaitable<ending> wait_exit() {
    if (!pidfd_) {
      int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid(), 0));
      if (fd < 0) throw std::system_error(errno, std::generic_category(), "pidfd_open");
      pidfd_.emplace(co_await net::this_coro::executor, fd);
    }
    for (;;) {
      if (auto e = try_reap()) co_return *e;
      auto [ec] = co_await pidfd_->async_wait(net::posix::descriptor_base::wait_read,
                                              net::as_tuple(net::use_awaitable));
      if (ec == net::error::operation_aborted) throw boost::system::system_error(ec);
    }
  }
  /// Wakes wait_exit() (it then throws operation_aborted).
  void cancel_wait_exit() {
    if (pidfd_) pidfd_->cancel();
  }

 private:
  std::optional<net::posix::stream_descriptor> pidfd_;
};

/// The no-userpipe terminal: posix_openpt and a stream_descriptor.
class kernel_terminal final : public terminal {
 public:
  kernel_terminal(net::any_io_executor executor, std::vector<std::string> const& argv, unsigned short rows,
                  unsigned short cols)
      : master_(executor) {
    int fd = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "posix_openpt");
    master_.assign(fd);
    char name[128];
    if (::grantpt(fd) != 0 || ::unlockpt(fd) != 0 || ::ptsname_r(fd, name, sizeof name) != 0)
      throw std::system_error(errno, std::generic_category(), "pty");
    resize(rows, cols);
    master_.non_blocking(true);

    // The child: a new session whose controlling terminal is the slave
    // (glibc's posix_spawn runs setsid before the file actions, and opening
    // a tty without O_NOCTTY as a session leader makes it the controlling
    // one), default signal dispositions (the server ignores SIGPIPE), no
    // descriptor but 0-2.
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawnattr_init(&attr);
    ::posix_spawn_file_actions_addopen(&actions, 0, name, O_RDWR, 0);
    ::posix_spawn_file_actions_adddup2(&actions, 0, 1);
    ::posix_spawn_file_actions_adddup2(&actions, 0, 2);
    ::posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    ::posix_spawnattr_setsigdefault(&attr, &all);
    ::posix_spawnattr_setsigmask(&attr, &none);
    ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    std::vector<std::string> env = child_environment();
    std::vector<char*> cargv, cenv;
    for (auto const& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    for (auto const& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
    cenv.push_back(nullptr);
    int rc = ::posix_spawnp(&pid_, cargv[0], &actions, &attr, cargv.data(), cenv.data());
    ::posix_spawn_file_actions_destroy(&actions);
    ::posix_spawnattr_destroy(&attr);
    if (rc != 0) throw std::system_error(rc, std::generic_category(), "posix_spawn " + argv[0]);
  }
  ~kernel_terminal() override {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      int status;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }

  net::awaitable<std::size_t> read_some(net::mutable_buffer buffer, error_code& ec) override {
    if (!master_.is_open()) {
      ec = net::error::eof;
      co_return 0;
    }
    auto [e, n] = co_await master_.async_read_some(buffer, net::as_tuple(net::use_awaitable));
    // The master reads EIO once no process holds the slave: the hang-up.
    ec = (e == boost::system::error_code(EIO, boost::system::system_category())) ? net::error::eof : e;
    co_return n;
  }
  net::awaitable<void> write(net::const_buffer buffer, error_code& ec) override {
    auto [e, n] = co_await net::async_write(master_, buffer, net::as_tuple(net::use_awaitable));
    ec = e;
  }
  void resize(unsigned short rows, unsigned short cols) override {
    winsize ws{};
    ws.ws_row = rows;
    ws.ws_col = cols;
    ::ioctl(master_.native_handle(), TIOCSWINSZ, &ws);
  }
  pid_t pid() const override { return pid_; }
  std::optional<ending> try_reap() override {
    if (reaped_) return ending_;
    int status;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r != pid_) return std::nullopt;
    ending_ = decode_wait_status(status);
    reaped_ = ending_.has_value();
    return ending_;
  }
  void close_output() override {
    error_code ignored;
    master_.cancel(ignored);
  }
  void signal(int signal) override {
    if (!reaped_) ::kill(pid_, signal);
  }

 private:
  net::posix::stream_descriptor master_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  std::optional<ending> ending_;
};

#ifdef WEB_TERMINAL_HAS_USERPIPE_PTY
/// The child's pty through userpipe rings: pumped by threads
/// (userpipe::spawn) or on the event loop (userpipe::boost_asio::spawn).
class userpipe_terminal final : public terminal {
 public:
  userpipe_terminal(net::io_context::executor_type executor, pump_mode mode,
                    std::vector<std::string> const& argv, unsigned short rows, unsigned short cols)
      : child_(start(executor, mode, argv, rows, cols)),
        screen_(executor, std::move(child_.out())),
        keys_(executor, std::move(child_.in())) {}

  net::awaitable<std::size_t> read_some(net::mutable_buffer buffer, error_code& ec) override {
    auto [e, n] = co_await screen_.async_read_some(buffer, net::as_tuple(net::use_awaitable));
    ec = e;
    co_return n;
  }
  net::awaitable<void> write(net::const_buffer buffer, error_code& ec) override {
    auto [e, n] = co_await net::async_write(keys_, buffer, net::as_tuple(net::use_awaitable));
    ec = e;
  }
  void resize(unsigned short rows, unsigned short cols) override { child_.resize(rows, cols); }
  pid_t pid() const override { return child_.pid(); }
  std::optional<ending> try_reap() override {
    std::error_code ec;
    auto s = child_.try_wait(ec);
    if (!s) return std::nullopt;
    return ending{s->code, s->signal};
  }
  void close_output() override { screen_.close(); }
  void signal(int signal) override {
    std::error_code ignored;
    child_.kill(signal, ignored);
  }

 private:
  // The io_context's own executor type, not any_io_executor (which works
  // too): every pump step and ring wait dispatches through it, and the
  // type-erased one made the event-mode sessions row of web_terminal_bench
  // 0.85x (docs/web_terminal.md).
  static userpipe::child start(net::io_context::executor_type executor, pump_mode mode,
                               std::vector<std::string> const& argv, unsigned short rows,
                               unsigned short cols) {
    userpipe::spawn_options opts;
    opts.terminal = userpipe::terminal_size{.rows = rows, .cols = cols};
    opts.environment = child_environment();
    if (mode == pump_mode::event) return userpipe::boost_asio::spawn(executor, argv, opts);
    return userpipe::spawn(argv, opts);
  }

  userpipe::child child_;
  userpipe::boost_asio::async_reader screen_;
  userpipe::boost_asio::async_writer keys_;
};
#endif

inline std::unique_ptr<terminal> start_terminal(net::io_context::executor_type executor, pump_mode mode,
                                                std::vector<std::string> const& argv, unsigned short rows,
                                                unsigned short cols) {
#ifdef WEB_TERMINAL_HAS_USERPIPE_PTY
  if (mode != pump_mode::kernel) return std::make_unique<userpipe_terminal>(executor, mode, argv, rows, cols);
#else
  if (mode != pump_mode::kernel)
    throw std::system_error(std::make_error_code(std::errc::function_not_supported),
                            "this build has no userpipe pty (--pump kernel only)");
#endif
  return std::make_unique<kernel_terminal>(executor, argv, rows, cols);
}

}  // namespace web_terminal
