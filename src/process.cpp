// Child processes whose stdio are userpipe ends: posix_spawn with kernel
// pipes (or a pseudo-terminal) to the child, one pump thread per piped
// stream, or pumps on an event loop (detail::loop_pumps). See
// userpipe/process.hpp.
#include "userpipe/process.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <thread>
#include <utility>

#include "posix.hpp"
#include "pump.hpp"

extern char** environ;

namespace userpipe {

struct child::state {
  pid_t pid = -1;
  std::optional<exit_status> status;
  detail::ready_event cancel;  // set once the handle stops the pumps
  std::vector<std::thread> pumps;
  std::unique_ptr<detail::loop_pumps> loop;  // instead of threads
  detail::posix::unique_fd terminal;         // the pty master, for resize
};

namespace {

using detail::posix::errno_code;
using detail::posix::retry;
using detail::posix::unique_fd;

/// Moves a descriptor above 2. A pipe end that landed on 0-2 (the process
/// closed its own stdio) would be dup2'd onto itself in the child, which
/// keeps its O_CLOEXEC on older glibc and closes it at exec.
bool above_stdio(unique_fd& fd, std::error_code& ec) noexcept {
  if (fd.get() > 2) return true;
  int const moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3);
  if (moved < 0) {
    ec = errno_code();
    return false;
  }
  fd = unique_fd(moved);
  return true;
}

/// One stream set to stdio::pipe: the child's end, ours (non-blocking, so
/// the pump can be cancelled while the child does not move), the event
/// the ring wakes our pump through.
struct piped_stream {
  unique_fd child_end, our_end;
  detail::ready_event ring_ready;
};

bool make_stream(bool child_reads, piped_stream& s, std::error_code& ec) noexcept {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    ec = errno_code();
    return false;
  }
  unique_fd read_end(fds[0]), write_end(fds[1]);
  if (!above_stdio(read_end, ec) || !above_stdio(write_end, ec)) return false;
  s.child_end = child_reads ? std::move(read_end) : std::move(write_end);
  s.our_end = child_reads ? std::move(write_end) : std::move(read_end);
  int const flags = ::fcntl(s.our_end.get(), F_GETFL);
  if (flags < 0 || ::fcntl(s.our_end.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    ec = errno_code();
    return false;
  }
  s.ring_ready = detail::ready_event::make(ec);
  return !ec;
}

/// A new pseudo-terminal of `size`: the master (non-blocking, close-on-exec,
/// above 2) and the slave's path, for the child to open. The slave is not
/// opened here: the child's open of it is what makes it its controlling
/// terminal, and with no slave open in this process the pty hangs up when
/// the child's last holder closes it.
bool open_terminal(terminal_size size, unique_fd& master, std::string& slave, std::error_code& ec) noexcept {
  master.reset(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!master || !above_stdio(master, ec)) {
    if (!ec) ec = errno_code();
    return false;
  }
  char name[128];
  if (::grantpt(master.get()) != 0 || ::unlockpt(master.get()) != 0) {
    ec = errno_code();
    return false;
  }
  if (int rc = ::ptsname_r(master.get(), name, sizeof name)) {
    ec = errno_code(rc);
    return false;
  }
  winsize const ws{size.rows, size.cols, 0, 0};
  int const flags = ::fcntl(master.get(), F_GETFL);
  if (::ioctl(master.get(), TIOCSWINSZ, &ws) != 0 || flags < 0 ||
      ::fcntl(master.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    ec = errno_code();
    return false;
  }
  try {
    slave = name;
  } catch (std::bad_alloc const&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    return false;
  }
  return true;
}

/// One more descriptor of the master for a pump (the description, and so
/// O_NONBLOCK, is shared).
bool dup_master(unique_fd const& master, piped_stream& s, std::error_code& ec) noexcept {
  s.our_end.reset(::fcntl(master.get(), F_DUPFD_CLOEXEC, 3));
  if (!s.our_end) {
    ec = errno_code();
    return false;
  }
  s.ring_ready = detail::ready_event::make(ec);
  return !ec;
}

exit_status decode(int raw) noexcept {
  if (WIFEXITED(raw)) return {.code = WEXITSTATUS(raw), .signal = 0};
  if (WIFSIGNALED(raw)) return {.code = -1, .signal = WTERMSIG(raw)};
  return {};
}

/// On a terminal, in() and out() are its two directions and err() is none.
std::array<stdio, 3> modes_of(spawn_options const& opts) noexcept {
  if (opts.terminal) return {stdio::pipe, stdio::pipe, stdio::inherit};
  return {opts.in, opts.out, opts.err};
}

/// Everything posix_spawn takes besides the program: the file actions that
/// put the child's three streams in place, the attributes that reset its
/// signal state, argv and envp. Built before the child exists.
class spawn_plan {
 public:
  spawn_plan() noexcept = default;
  spawn_plan(spawn_plan const&) = delete;
  spawn_plan& operator=(spawn_plan const&) = delete;
  ~spawn_plan() {
    if (have_actions_) posix_spawn_file_actions_destroy(&actions_);
    if (have_attr_) posix_spawnattr_destroy(&attr_);
  }

  /// child_ends[i]: the descriptor the child gets as i where stream i is
  /// stdio::pipe. Throws std::bad_alloc only.
  /// `terminal`: the slave's path when the child runs on a pty.
  std::error_code prepare(std::vector<std::string> const& argv, spawn_options const& opts,
                          std::array<int, 3> const& child_ends, std::string const& terminal = {}) {
    if (std::error_code ec = copy_descriptors(opts.descriptors)) return ec;
    if (int rc = posix_spawn_file_actions_init(&actions_)) return errno_code(rc);
    have_actions_ = true;
    if (int rc = posix_spawnattr_init(&attr_)) return errno_code(rc);
    have_attr_ = true;
    if (int rc = add_file_actions(opts, child_ends, terminal)) return errno_code(rc);
    if (int rc = reset_signals(!terminal.empty())) return errno_code(rc);
    set_arguments(argv, opts.environment);
    return {};
  }

  /// Starts the child and returns its pid; -1 with `ec` set if it could not
  /// be started (glibc reports a failed exec here too).
  pid_t start(bool search_path, std::error_code& ec) noexcept {
    pid_t pid = -1;
    int const rc = search_path ? posix_spawnp(&pid, args_[0], &actions_, &attr_, args_.data(), envp_)
                               : posix_spawn(&pid, args_[0], &actions_, &attr_, args_.data(), envp_);
    if (rc != 0) {
      ec = errno_code(rc);
      return -1;
    }
    return pid;
  }

 private:
  int add_file_actions(spawn_options const& opts, std::array<int, 3> const& child_ends,
                       std::string const& terminal) noexcept {
    std::array<stdio, 3> const modes = modes_of(opts);
    if (!terminal.empty()) {
      // After setsid (an attribute, applied before the file actions): the
      // first tty a session leader opens without O_NOCTTY becomes its
      // controlling terminal.
      if (int rc = posix_spawn_file_actions_addopen(&actions_, 0, terminal.c_str(), O_RDWR, 0)) return rc;
      if (int rc = posix_spawn_file_actions_adddup2(&actions_, 0, 1)) return rc;
      if (int rc = posix_spawn_file_actions_adddup2(&actions_, 0, 2)) return rc;
    }
    for (int i = 0; i < 3 && terminal.empty(); ++i) {
      int rc = 0;
      if (modes[i] == stdio::null)
        rc = posix_spawn_file_actions_addopen(&actions_, i, "/dev/null", i == 0 ? O_RDONLY : O_WRONLY, 0);
      else if (modes[i] == stdio::pipe)
        rc = posix_spawn_file_actions_adddup2(&actions_, child_ends[i], i);
      if (rc != 0) return rc;
    }
    // The extra descriptors, from copies above every number the child gets
    // (copy_descriptors), so that no dup2 overwrites a source another one
    // still needs; then everything else above 2 is closed.
    int highest = 2;
    for (auto const& [number, copy] : extra_) {
      if (int rc = posix_spawn_file_actions_adddup2(&actions_, copy.get(), number)) return rc;
      highest = std::max(highest, number);
    }
    for (int fd = 3; fd < highest; ++fd) {
      bool const given =
          std::any_of(extra_.begin(), extra_.end(), [fd](auto const& e) { return e.first == fd; });
      // A close of a descriptor that is not open is ignored by glibc.
      if (!given)
        if (int rc = posix_spawn_file_actions_addclose(&actions_, fd)) return rc;
    }
    // Descriptors someone else left inheritable must not reach the child
    // either; ours are all O_CLOEXEC already.
    if (int rc = posix_spawn_file_actions_addclosefrom_np(&actions_, highest + 1)) return rc;
    if (opts.working_directory.empty()) return 0;
    return posix_spawn_file_actions_addchdir_np(&actions_, opts.working_directory.c_str());
  }

  /// The child starts with no signal blocked and SIGPIPE at its default,
  /// whatever this thread blocks or the process ignores: `yes` writing to a
  /// closed out() must die of SIGPIPE as it would in a shell.
  /// On a terminal also: a new session (POSIX_SPAWN_SETSID, glibc 2.26+),
  /// and the job-control signals at their defaults, so that Ctrl-C reaches
  /// the foreground job whatever this process ignores.
  int reset_signals(bool terminal) noexcept {
    sigset_t empty, defaults;
    sigemptyset(&empty);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    if (terminal)
      for (int sig : {SIGINT, SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU, SIGHUP, SIGWINCH})
        sigaddset(&defaults, sig);
    if (int rc = posix_spawnattr_setsigmask(&attr_, &empty)) return rc;
    if (int rc = posix_spawnattr_setsigdefault(&attr_, &defaults)) return rc;
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (terminal) flags |= POSIX_SPAWN_SETSID;
    return posix_spawnattr_setflags(&attr_, flags);
  }

  void set_arguments(std::vector<std::string> const& argv,
                     std::optional<std::vector<std::string>> const& environment) {
    args_.reserve(argv.size() + 1);
    for (auto const& a : argv) args_.push_back(const_cast<char*>(a.c_str()));
    args_.push_back(nullptr);
    if (!environment) {
      envp_ = environ;
      return;
    }
    env_.reserve(environment->size() + 1);
    for (auto const& e : *environment) env_.push_back(const_cast<char*>(e.c_str()));
    env_.push_back(nullptr);
    envp_ = env_.data();
  }

  /// Checks spawn_options::descriptors and copies each source above the
  /// highest child number (close-on-exec, closed with the plan).
  std::error_code copy_descriptors(std::vector<std::pair<int, int>> const& wanted) {
    int highest = 2;
    for (std::size_t i = 0; i < wanted.size(); ++i) {
      auto const [number, source] = wanted[i];
      if (number < 3 || source < 0) return std::make_error_code(std::errc::invalid_argument);
      for (std::size_t j = 0; j < i; ++j)
        if (wanted[j].first == number) return std::make_error_code(std::errc::invalid_argument);
      highest = std::max(highest, number);
    }
    for (auto const& [number, source] : wanted) {
      detail::posix::unique_fd copy(::fcntl(source, F_DUPFD_CLOEXEC, highest + 1));
      if (!copy) return errno_code();
      extra_.emplace_back(number, std::move(copy));
    }
    return {};
  }

  std::vector<std::pair<int, detail::posix::unique_fd>> extra_;
  posix_spawn_file_actions_t actions_;
  posix_spawnattr_t attr_;
  bool have_actions_ = false, have_attr_ = false;
  std::vector<char*> args_, env_;
  char* const* envp_ = nullptr;
};

/// Runs a pump on a thread that blocks every signal: SIGPIPE from a write
/// to a dead child stays pending on the thread and dies with it, and the
/// process's signal handlers never run on a library thread.
template <class F>
std::thread start_quiet_thread(F&& f) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  struct restore {
    sigset_t* old;
    ~restore() { pthread_sigmask(SIG_SETMASK, old, nullptr); }
  } r{&old};
  return std::thread(std::forward<F>(f));
}

/// The library's side of the piped streams, handed to the pump threads: the
/// ring end each pump serves (stdin's reader, stdout's and stderr's writers)
/// and the kernel pipe end and eventfd of each piped stream.
struct pump_ends {
  std::array<piped_stream, 3> streams;
  reader stdin_ring;
  std::array<writer, 3> output_rings;  // [1], [2]
};

/// Starts one pump thread per piped stream; each owns its ring end, its pipe
/// end and its eventfd. Throws std::system_error if a thread cannot start
/// (those already started stay in `pumps`, to be stopped through cancel_fd).
void start_pumps(std::array<stdio, 3> const& modes, pump_ends& ends, int cancel_fd, bool terminal,
                 std::vector<std::thread>& pumps) {
  for (int i = 0; i < 3; ++i) {
    if (modes[i] != stdio::pipe) continue;
    piped_stream& s = ends.streams[i];
    if (i == 0) {
      pumps.push_back(
          start_quiet_thread([cancel_fd, terminal, from = std::move(ends.stdin_ring),
                              ready = std::move(s.ring_ready), ours = std::move(s.our_end)]() mutable {
            std::error_code ignored;
            detail::pump_out_of(from, ours.get(), {&ready, cancel_fd, terminal}, ignored);
            from.close();  // a writer still writing gets broken_pipe
          }));
    } else {
      pumps.push_back(
          start_quiet_thread([cancel_fd, terminal, to = std::move(ends.output_rings[i]),
                              ready = std::move(s.ring_ready), ours = std::move(s.our_end)]() mutable {
            std::error_code ignored;
            detail::pump_into(ours.get(), to, {&ready, cancel_fd, terminal}, ignored);
            // Our end closes with the lambda: a child still writing gets
            // SIGPIPE, as after `head` exits.
          }));
    }
  }
}

}  // namespace

child::child() noexcept = default;
child::child(child&&) noexcept = default;

child& child::operator=(child&& other) noexcept {
  if (this != &other) {
    tear_down();
    in_ = std::move(other.in_);
    out_ = std::move(other.out_);
    err_ = std::move(other.err_);
    state_ = std::move(other.state_);
  }
  return *this;
}

child::~child() { tear_down(); }

void child::tear_down() noexcept {
  // Our own ends first: the child gets EOF on stdin, and the output pumps
  // stop at their next read.
  in_.close();
  out_.close();
  err_.close();
  if (!state_) return;
  if (!state_->status) {
    ::kill(state_->pid, SIGKILL);
    std::error_code ignored;
    wait(ignored);
  }
  if (state_->loop) state_->loop->stop();
  if (state_->cancel) state_->cancel.set();
  for (auto& t : state_->pumps) t.join();
  state_.reset();
}

pid_t child::pid() const noexcept { return state_ ? state_->pid : -1; }

exit_status child::wait(std::error_code& ec) noexcept {
  ec.clear();
  if (!state_) {
    ec = std::make_error_code(std::errc::no_child_process);
    return {};
  }
  if (state_->status) return *state_->status;
  int raw = 0;
  pid_t const r = retry([&] { return ::waitpid(state_->pid, &raw, 0); });
  if (r < 0) {
    ec = errno_code();
    return {};
  }
  state_->status = decode(raw);
  return *state_->status;
}

exit_status child::wait() {
  std::error_code ec;
  exit_status s = wait(ec);
  detail::throw_if(ec, "userpipe::child::wait");
  return s;
}

std::optional<exit_status> child::try_wait(std::error_code& ec) noexcept {
  ec.clear();
  if (!state_) {
    ec = std::make_error_code(std::errc::no_child_process);
    return std::nullopt;
  }
  if (state_->status) return state_->status;
  int raw = 0;
  pid_t const r = retry([&] { return ::waitpid(state_->pid, &raw, WNOHANG); });
  if (r < 0) {
    ec = errno_code();
    return std::nullopt;
  }
  if (r == 0) return std::nullopt;
  state_->status = decode(raw);
  return state_->status;
}

std::optional<exit_status> child::try_wait() {
  std::error_code ec;
  auto s = try_wait(ec);
  detail::throw_if(ec, "userpipe::child::try_wait");
  return s;
}

void child::kill(int signal, std::error_code& ec) noexcept {
  ec.clear();
  if (!state_) {
    ec = std::make_error_code(std::errc::no_child_process);
    return;
  }
  if (state_->status) return;
  if (::kill(state_->pid, signal) != 0) ec = errno_code();
}

void child::kill(int signal) {
  std::error_code ec;
  kill(signal, ec);
  detail::throw_if(ec, "userpipe::child::kill");
}

void child::resize(unsigned short rows, unsigned short cols, std::error_code& ec) noexcept {
  ec.clear();
  if (!state_) {
    ec = std::make_error_code(std::errc::no_child_process);
    return;
  }
  if (!state_->terminal) {
    ec = std::make_error_code(std::errc::inappropriate_io_control_operation);
    return;
  }
  winsize const ws{rows, cols, 0, 0};
  if (::ioctl(state_->terminal.get(), TIOCSWINSZ, &ws) != 0) ec = errno_code();
}

void child::resize(unsigned short rows, unsigned short cols) {
  std::error_code ec;
  resize(rows, cols, ec);
  detail::throw_if(ec, "userpipe::child::resize");
}

child spawn(std::vector<std::string> const& argv, spawn_options const& opts, std::error_code& ec) noexcept {
  return detail::spawn_with(argv, opts, nullptr, ec);
}

child detail::spawn_with(std::vector<std::string> const& argv, spawn_options const& opts,
                         std::unique_ptr<loop_pumps> loop, std::error_code& ec) noexcept {
  ec.clear();
  if (argv.empty()) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return {};
  }
  try {
    std::array<stdio, 3> const modes = modes_of(opts);
    pump_ends ends;
    unique_fd master;
    std::string slave;
    if (opts.terminal) {
      if (!open_terminal(*opts.terminal, master, slave, ec) || !dup_master(master, ends.streams[0], ec) ||
          !dup_master(master, ends.streams[1], ec))
        return {};
    } else {
      for (int i = 0; i < 3; ++i)
        if (modes[i] == stdio::pipe && !make_stream(i == 0, ends.streams[i], ec)) return {};
    }
    detail::ready_event cancel;
    if (!loop) cancel = detail::ready_event::make(ec);
    if (ec) return {};
    spawn_plan plan;
    ec = plan.prepare(
        argv, opts,
        {ends.streams[0].child_end.get(), ends.streams[1].child_end.get(), ends.streams[2].child_end.get()},
        slave);
    if (ec) return {};

    // The ring pipes before the child: nothing that can fail comes after it
    // except starting threads.
    child c;
    if (modes[0] == stdio::pipe) std::tie(ends.stdin_ring, c.in_) = make_pipe(opts.pipe);
    if (modes[1] == stdio::pipe) std::tie(c.out_, ends.output_rings[1]) = make_pipe(opts.pipe);
    if (modes[2] == stdio::pipe) std::tie(c.err_, ends.output_rings[2]) = make_pipe(opts.pipe);

    pid_t const pid = plan.start(opts.search_path, ec);
    for (auto& s : ends.streams) s.child_end.reset();
    if (ec) return {};
    c.state_ = std::make_unique<child::state>();
    c.state_->pid = pid;
    c.state_->cancel = std::move(cancel);
    c.state_->terminal = std::move(master);
    try {
      if (loop) {
        int const fds[3] = {ends.streams[0].our_end.release(), ends.streams[1].our_end.release(),
                            ends.streams[2].our_end.release()};
        c.state_->loop = std::move(loop);
        c.state_->loop->start(fds, std::move(ends.stdin_ring), std::move(ends.output_rings[1]),
                              std::move(ends.output_rings[2]), opts.terminal.has_value());
      } else {
        start_pumps(modes, ends, c.state_->cancel.fd(), opts.terminal.has_value(), c.state_->pumps);
      }
    } catch (std::system_error const& e) {
      ec = e.code();
      return {};  // c's destructor kills and reaps the child, stops what started
    } catch (std::bad_alloc const&) {
      ec = std::make_error_code(std::errc::not_enough_memory);
      return {};
    }
    return c;
  } catch (std::system_error const& e) {
    ec = e.code();
  } catch (std::bad_alloc const&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  return {};
}

child spawn(std::vector<std::string> const& argv, spawn_options const& opts) {
  std::error_code ec;
  child c = spawn(argv, opts, ec);
  detail::throw_if(ec, "userpipe::spawn");
  return c;
}

}  // namespace userpipe
