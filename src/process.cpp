// Child processes whose stdio are userpipe ends: posix_spawn with kernel
// pipes to the child, one pump thread per piped stream. See
// userpipe/process.hpp.
#include "userpipe/process.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

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
  detail::posix::unique_fd cancel;  // an eventfd: readable once the handle stops the pumps
  std::vector<std::thread> pumps;
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
/// the pump can be cancelled while the child does not move), the eventfd
/// the ring wakes our pump through.
struct piped_stream {
  unique_fd child_end, our_end, wake;
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
  s.wake = unique_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (s.wake.get() < 0) {
    ec = errno_code();
    return false;
  }
  return true;
}

exit_status decode(int raw) noexcept {
  if (WIFEXITED(raw)) return {.code = WEXITSTATUS(raw), .signal = 0};
  if (WIFSIGNALED(raw)) return {.code = -1, .signal = WTERMSIG(raw)};
  return {};
}

/// posix_spawn's file actions and attributes, destroyed on scope exit.
struct spawn_setup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  bool have_actions = false, have_attr = false;
  ~spawn_setup() {
    if (have_actions) posix_spawn_file_actions_destroy(&actions);
    if (have_attr) posix_spawnattr_destroy(&attr);
  }
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

}  // namespace

child::child() noexcept = default;
child::child(child&&) noexcept = default;

child& child::operator=(child&& other) noexcept {
  if (this != &other) {
    release();
    in_ = std::move(other.in_);
    out_ = std::move(other.out_);
    err_ = std::move(other.err_);
    state_ = std::move(other.state_);
  }
  return *this;
}

child::~child() { release(); }

void child::release() noexcept {
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
  if (state_->cancel) {
    std::uint64_t const one = 1;
    retry([&] { return ::write(state_->cancel.get(), &one, sizeof one); });
  }
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

child spawn(std::vector<std::string> const& argv, spawn_options const& opts, std::error_code& ec) noexcept {
  ec.clear();
  if (argv.empty()) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return {};
  }
  try {
    std::array<stdio, 3> const modes = {opts.in, opts.out, opts.err};
    std::array<piped_stream, 3> streams;
    for (int i = 0; i < 3; ++i)
      if (modes[i] == stdio::pipe && !make_stream(i == 0, streams[i], ec)) return {};
    unique_fd cancel(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (cancel.get() < 0) {
      ec = errno_code();
      return {};
    }

    spawn_setup setup;
    if (int rc = posix_spawn_file_actions_init(&setup.actions)) {
      ec = errno_code(rc);
      return {};
    }
    setup.have_actions = true;
    if (int rc = posix_spawnattr_init(&setup.attr)) {
      ec = errno_code(rc);
      return {};
    }
    setup.have_attr = true;

    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; ++i) {
      if (modes[i] == stdio::null)
        rc =
            posix_spawn_file_actions_addopen(&setup.actions, i, "/dev/null", i == 0 ? O_RDONLY : O_WRONLY, 0);
      else if (modes[i] == stdio::pipe)
        rc = posix_spawn_file_actions_adddup2(&setup.actions, streams[i].child_end.get(), i);
    }
    // Descriptors someone else left inheritable must not reach the child
    // either; ours are all O_CLOEXEC already.
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&setup.actions, 3);
    if (rc == 0 && !opts.working_directory.empty())
      rc = posix_spawn_file_actions_addchdir_np(&setup.actions, opts.working_directory.c_str());
    // The child starts with no signal blocked and SIGPIPE at its default,
    // whatever this thread blocks or the process ignores: `yes` writing to a
    // closed out() must die of SIGPIPE as it would in a shell.
    sigset_t empty, defaults;
    sigemptyset(&empty);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    if (rc == 0) rc = posix_spawnattr_setsigmask(&setup.attr, &empty);
    if (rc == 0) rc = posix_spawnattr_setsigdefault(&setup.attr, &defaults);
    if (rc == 0) rc = posix_spawnattr_setflags(&setup.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (rc != 0) {
      ec = errno_code(rc);
      return {};
    }

    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (auto const& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    std::vector<char*> env;
    if (opts.environment) {
      env.reserve(opts.environment->size() + 1);
      for (auto const& e : *opts.environment) env.push_back(const_cast<char*>(e.c_str()));
      env.push_back(nullptr);
    }
    char* const* envp = opts.environment ? env.data() : environ;

    // The ring pipes before the child: nothing that can fail comes after it
    // except starting threads.
    child c;
    std::array<reader, 3> internal_readers;  // only [0] used: stdin's ring
    std::array<writer, 3> internal_writers;  // [1], [2]: stdout's and stderr's rings
    if (modes[0] == stdio::pipe) std::tie(internal_readers[0], c.in_) = make_pipe(opts.pipe);
    if (modes[1] == stdio::pipe) std::tie(c.out_, internal_writers[1]) = make_pipe(opts.pipe);
    if (modes[2] == stdio::pipe) std::tie(c.err_, internal_writers[2]) = make_pipe(opts.pipe);

    pid_t pid = -1;
    rc = opts.search_path ? posix_spawnp(&pid, args[0], &setup.actions, &setup.attr, args.data(), envp)
                          : posix_spawn(&pid, args[0], &setup.actions, &setup.attr, args.data(), envp);
    for (auto& s : streams) s.child_end = unique_fd();
    if (rc != 0) {
      ec = errno_code(rc);
      return {};
    }
    c.state_ = std::make_unique<child::state>();
    c.state_->pid = pid;
    c.state_->cancel = std::move(cancel);

    try {
      for (int i = 0; i < 3; ++i) {
        if (modes[i] != stdio::pipe) continue;
        detail::pump_control const control{streams[i].wake.get(), c.state_->cancel.get()};
        int const fd = streams[i].our_end.get();
        if (i == 0) {
          c.state_->pumps.push_back(start_quiet_thread([control, fd, from = std::move(internal_readers[0]),
                                                        wake = std::move(streams[i].wake),
                                                        ours = std::move(streams[i].our_end)]() mutable {
            std::error_code ignored;
            detail::pump_out_of(from, fd, control, ignored);
            from.close();  // a writer still writing gets broken_pipe
          }));
        } else {
          c.state_->pumps.push_back(start_quiet_thread([control, fd, to = std::move(internal_writers[i]),
                                                        wake = std::move(streams[i].wake),
                                                        ours = std::move(streams[i].our_end)]() mutable {
            std::error_code ignored;
            detail::pump_into(fd, to, control, ignored);
            // Our end closes with the lambda: a child still writing gets
            // SIGPIPE, as after `head` exits.
          }));
        }
      }
    } catch (std::system_error const& e) {
      ec = e.code();
      return {};  // c's destructor kills and reaps the child, joins what started
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
