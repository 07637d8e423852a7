// userpipe/process.hpp — a child process whose stdin, stdout and stderr are
// userpipe ends.
//
//   auto child = userpipe::spawn({"sh", "-c", "tr a-z A-Z"},
//                                {.in = userpipe::stdio::pipe, .out = userpipe::stdio::pipe});
//   child.in().write("hello\n");
//   child.in().close();                    // the child reads EOF
//   std::string line;
//   child.out().read_line(line);           // "HELLO"
//   userpipe::exit_status s = child.wait();
//
// A child can only talk through descriptors, so each stream set to
// stdio::pipe is a kernel pipe between the child and this process, and a
// thread the handle owns (one per piped stream) moves the bytes between that
// pipe and the ring with the pumps of userpipe/fd.hpp: read(2) straight into
// the ring, write(2) straight out of it, the one copy a kernel pipe costs.
// The user-side ends are ordinary userpipe ends: move them to other threads,
// hand them to an event loop, read lines from them.
//
// Streams:
//  - stdout/stderr: the child's output arrives in out()/err(), then EOF when
//    every holder of the child's end has closed it (the child has exited or
//    closed the stream; a grandchild that inherited it keeps it open). A
//    child killed mid-stream therefore gives EOF after its last byte.
//    Closing the reader closes the pipe: the child's next write gets
//    SIGPIPE/EPIPE, as in `yes | head`.
//  - stdin: in() writes to the child; closing it gives the child EOF. When
//    the child closes its stdin (or exits), the pump closes its reader with
//    broken_pipe, so a write to in() fails with broken_pipe, as on a kernel
//    pipe (a write already in the ring when it happens may still succeed).
//
// Descriptors: every descriptor the library makes is O_CLOEXEC, and the
// child closes every descriptor above 2 before exec (posix_spawn's
// closefrom action, glibc 2.34+), so a child sees 0, 1 and 2 only, whatever
// the rest of the process left inheritable. The child is started with
// posix_spawn (vfork-like, cheap even for a large parent); glibc reports an
// exec failure as posix_spawn's result, which spawn throws.
//
// Signals: the pump threads block every signal; SIGPIPE from a dead child's
// stdin never reaches the process.
//
// Terminal: with spawn_options::terminal the child runs on a new
// pseudo-terminal instead: it is a session leader whose controlling
// terminal, stdin, stdout and stderr are the pty's slave (so a shell has a
// prompt, line editing and job control, and byte 0x03 in in() is SIGINT to
// the foreground job). in() carries keystrokes to the master, out() the
// screen output (stdout and stderr together, as a terminal shows them);
// err() is closed. resize() sets the window size (the foreground job gets
// SIGWINCH). When the last holder of the slave closes it (the child exits,
// with its background jobs), the pty hangs up: out() gets EOF after the last
// byte, and a write to in() then fails with broken_pipe. Closing in() does
// not hang up the terminal (type "\x04" for end-of-file in canonical mode).
// How: the master comes from posix_openpt; posix_spawn's POSIX_SPAWN_SETSID
// makes the child a session leader before the file actions run, and the
// action that opens the slave (without O_NOCTTY) onto 0 then makes it the
// controlling terminal, as Linux does for a session leader without one. So
// the child starts with posix_spawn as ever, with no fork.
//
// Event loop: userpipe/asio_process.hpp (and boost_asio_process.hpp) start
// the same child with pumps that run on an Asio executor instead of threads.
//
// Threads: a child handle is used by one thread at a time; its ends follow
// the rules of pipe.hpp (each end may move to its own thread).
#pragma once

#include <sys/types.h>

#include <csignal>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "userpipe/pipe.hpp"

namespace userpipe {

/// Where one of the child's standard streams goes.
enum class stdio {
  inherit,  ///< the parent's own descriptor
  null,     ///< /dev/null
  pipe,     ///< a userpipe end in the handle: in(), out() or err()
};

/// A terminal's window size, in character cells.
struct terminal_size {
  unsigned short rows = 24;
  unsigned short cols = 80;
};

struct spawn_options {
  stdio in = stdio::inherit;
  stdio out = stdio::inherit;
  stdio err = stdio::inherit;
  /// Ring size of each piped stream.
  options pipe = {};
  /// Look argv[0] up in PATH when it has no slash (posix_spawnp).
  bool search_path = true;
  /// The child's environment as "NAME=value" strings; nullopt: this
  /// process's environment. (The PATH search uses this process's PATH.)
  std::optional<std::vector<std::string>> environment = std::nullopt;
  /// Directory the child starts in; empty: this process's.
  std::string working_directory = {};
  /// More descriptors for the child, as {child's number, this process's
  /// descriptor}: the child gets a copy of each at its number (not
  /// close-on-exec there); this process keeps its own, to close when it
  /// likes. The way to give a child an end of a shared pipe without a pump
  /// thread: {.descriptors = {{3, to_descriptor(std::move(end))}}} and tell
  /// the child "3" (userpipe/shared.hpp). Child numbers must be 3 or more
  /// (0-2 are the streams above) and distinct, else invalid_argument. Every
  /// other descriptor is closed in the child as before.
  std::vector<std::pair<int, int>> descriptors = {};
  /// Run the child on a new pseudo-terminal of this size (see Terminal
  /// above); in, out and err are then ignored: the three streams are the
  /// terminal, in() and out() its two directions. Ring sizes as `pipe`.
  std::optional<terminal_size> terminal = std::nullopt;
};

/// How a child ended.
struct exit_status {
  int code = -1;   ///< exit code if it exited, else -1
  int signal = 0;  ///< the signal that killed it, else 0
  bool exited() const noexcept { return signal == 0; }
  bool signaled() const noexcept { return signal != 0; }
  bool success() const noexcept { return code == 0 && signal == 0; }
  friend bool operator==(exit_status const&, exit_status const&) = default;
};

class child;

namespace detail {

/// The event-loop mode's hook (userpipe/asio_process.hpp): pumps that run
/// somewhere other than on threads the handle owns.
class loop_pumps {
 public:
  virtual ~loop_pumps() = default;
  /// This process's descriptor of each stream (-1 where none; non-blocking,
  /// close-on-exec; ownership passes, even if this throws) and the ring end
  /// each pump serves. On a terminal the stdin and stdout descriptors are
  /// two descriptors of the master. Called once, before spawn returns.
  virtual void start(int const (&fds)[3], reader stdin_ring, writer stdout_ring, writer stderr_ring,
                     bool terminal) = 0;
  /// The handle is going: stop the pumps soon (they close their ring ends
  /// as a cancelled thread pump does). Never blocks; any thread.
  virtual void stop() noexcept = 0;
};

/// spawn with `pumps` instead of threads. Private to the event-loop headers.
child spawn_with(std::vector<std::string> const& argv, spawn_options const& opts,
                 std::unique_ptr<loop_pumps> pumps, std::error_code& ec) noexcept;

}  // namespace detail

/// Starts argv[0] with arguments argv (argv must not be empty). Any thread.
/// Does not block beyond the exec (posix_spawn returns once the child has
/// exec'd or failed to). Throws std::system_error with the errno of the
/// failure: no_such_file_or_directory for a missing program,
/// permission_denied, too_many_files_open, resource_unavailable_try_again
/// (no process or thread), invalid_argument for an empty argv; with a
/// terminal, the errno of posix_openpt (e.g. no_space_on_device when the
/// system is out of ptys, too_many_files_open). Nothing is left behind on
/// failure.
child spawn(std::vector<std::string> const& argv, spawn_options const& opts = {});
child spawn(std::vector<std::string> const& argv, spawn_options const& opts, std::error_code& ec) noexcept;

/// A running (or finished) child and the user-side ends of its streams.
/// Move-only. Destroying a handle whose child has not been waited for kills
/// it (SIGKILL) and reaps it, so that no zombie and no pump thread outlive
/// the handle; call wait() first for a graceful end. The destructor then
/// stops the pump threads (bytes the child wrote are not waited for once
/// the handle goes) and joins them. Ends moved out of the handle stay valid:
/// a reader gets EOF (or operation_canceled if the handle cut the stream),
/// a writer gets broken_pipe.
class child {
 public:
  /// A handle with no child: pid() is -1, wait() fails with no_child_process.
  child() noexcept;
  child(child&&) noexcept;
  child& operator=(child&&) noexcept;
  ~child();

  pid_t pid() const noexcept;

  /// The child's stdin, stdout and stderr when set to stdio::pipe; a closed
  /// (default) end otherwise. Move them out freely.
  writer& in() noexcept { return in_; }
  reader& out() noexcept { return out_; }
  reader& err() noexcept { return err_; }

  /// Blocks until the child exits and returns how (waitpid). Again after
  /// that: the same status. Does not wait for the pumps: read out() to EOF
  /// before or after, as you need (a child blocked writing to a full
  /// out() never exits, as with kernel pipes). Throws std::system_error:
  /// no_child_process for an empty handle.
  exit_status wait();
  exit_status wait(std::error_code& ec) noexcept;
  /// Never blocks: the status if the child has exited, else nullopt.
  std::optional<exit_status> try_wait();
  std::optional<exit_status> try_wait(std::error_code& ec) noexcept;

  /// Sends `signal` to the child; does nothing once it has been waited for
  /// (its pid may belong to another process by then). Throws
  /// std::system_error (no_child_process for an empty handle).
  void kill(int signal = SIGTERM);
  void kill(int signal, std::error_code& ec) noexcept;

  /// Sets the terminal's window size (TIOCSWINSZ on the master); the
  /// child's foreground job gets SIGWINCH. Never blocks. Throws
  /// std::system_error: no_child_process for an empty handle,
  /// inappropriate_io_control_operation (ENOTTY) for a child without a
  /// terminal.
  void resize(unsigned short rows, unsigned short cols);
  void resize(unsigned short rows, unsigned short cols, std::error_code& ec) noexcept;

 private:
  struct state;  // the pid, the status, the pump threads (src/process.cpp)

  friend child detail::spawn_with(std::vector<std::string> const&, spawn_options const&,
                                  std::unique_ptr<detail::loop_pumps>, std::error_code&) noexcept;
  void release() noexcept;

  writer in_;
  reader out_;
  reader err_;
  std::unique_ptr<state> state_;
};

}  // namespace userpipe
