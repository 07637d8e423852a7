// Across processes: userpipe's shared ring against the kernel's channels,
// two processes, every competitor in one binary and one run.
//
// Tables (benchmark names are "<table>/<competitor>/<row>"):
//   process_stream  this process writes chunks of <row> bytes, a child reads
//                   with a 64 KiB buffer until EOF and reports the byte
//                   count, which must match;
//   ping_pong       64 bytes there and back through two channels, a child
//                   echoing: round trips/s, p50_us and p99_us;
//   child_output    a child writes 1 GiB (USERPIPE_SHM_CHILD_MIB) in 64 KiB
//                   writes, this process consumes it;
//   dead_peer       a child holds one end and does nothing; this process
//                   blocks on the other end (reader_blocked: in a read,
//                   writer_blocked: in a write to a full channel), another
//                   thread SIGKILLs the child 10 ms later; the iteration
//                   time is kill() to the blocked call's return, with
//                   p50_us, p99_us and max_us over the iterations (100,
//                   USERPIPE_SHM_KILLS); competitor waitpid is the floor:
//                   the same kill while this process waits in waitpid.
// Competitors: userpipe_shared (64 KiB shared ring), userpipe_shared_1m
// (1 MiB), userpipe_inprocess (the same 64 KiB ring between two threads of
// this process: what the shared ring should match), kernel_pipe (pipe2,
// default 64 KiB), kernel_pipe_1m (F_SETPIPE_SZ 1 MiB), socketpair
// (AF_UNIX, SOCK_STREAM), vmsplice (64 KiB rows: the writer vmsplice()s
// its pages into a default pipe, the reader read()s). In child_output:
// kernel_pipe (the child's stdout is a kernel pipe, read(2) here),
// userpipe_pump (userpipe::spawn with stdio::pipe: the same kernel pipe,
// drained by spawn's pump thread into a ring read in place), userpipe_shared
// (the child writes into a shared ring handed to it by spawn).
//
// Counters: cpu_s_per_GiB is the CPU time of both processes (getrusage:
// RUSAGE_SELF for this one, RUSAGE_CHILDREN across the reaped child) per GiB
// moved, split into parent_ and child_; a side that spins shows here.
//
// The children are this binary, started again with "--shm-child MODE ...":
// posix_spawn of /proc/self/exe with the channel's descriptor at 3 (and 4).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <userpipe/pipe.hpp>
#include <userpipe/process.hpp>
#include <userpipe/shared.hpp>
#include <vector>

#include "competitors.hpp"

extern char** environ;

namespace {

using clock_type = std::chrono::steady_clock;
constexpr std::size_t read_buffer_size = 65536;
constexpr std::size_t ping_size = 64;

[[noreturn]] void fail(char const* what) { throw std::system_error(errno, std::generic_category(), what); }

std::string self_path() {
  static std::string const path = [] {
    char buf[4096];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n < 0) fail("readlink /proc/self/exe");
    return std::string(buf, static_cast<std::size_t>(n));
  }();
  return path;
}

// ---- one end of a byte channel, whatever carries it ---------------------------

struct channel_end {
  virtual ~channel_end() = default;
  /// At least one byte, 0 at EOF.
  virtual std::size_t read_some(std::byte* p, std::size_t n) = 0;
  /// Everything; throws std::system_error (broken_pipe) if the reader is gone.
  virtual void write_all(std::byte const* p, std::size_t n) = 0;
  virtual void close() = 0;

  /// Exactly n bytes unless EOF comes first; returns the count.
  std::size_t read_exact(std::byte* p, std::size_t n) {
    std::size_t got = 0;
    while (got < n) {
      std::size_t k = read_some(p + got, n - got);
      if (k == 0) break;
      got += k;
    }
    return got;
  }
};

/// A kernel pipe or socket descriptor.
struct fd_end : channel_end {
  int fd;
  explicit fd_end(int f) : fd(f) {}
  ~fd_end() override { close(); }
  std::size_t read_some(std::byte* p, std::size_t n) override {
    for (;;) {
      ssize_t k = ::read(fd, p, n);
      if (k >= 0) return static_cast<std::size_t>(k);
      if (errno != EINTR) fail("read");
    }
  }
  void write_all(std::byte const* p, std::size_t n) override {
    while (n != 0) {
      ssize_t k = ::write(fd, p, n);
      if (k < 0) {
        if (errno == EINTR) continue;
        fail("write");
      }
      p += k;
      n -= static_cast<std::size_t>(k);
    }
  }
  void close() override {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

/// A pipe's write end fed with vmsplice(2): the pages are lent to the pipe,
/// not copied (the buffer is never changed after it is first filled).
struct vmsplice_end : fd_end {
  using fd_end::fd_end;
  void write_all(std::byte const* p, std::size_t n) override {
    while (n != 0) {
      iovec iov{const_cast<std::byte*>(p), n};
      ssize_t k = ::vmsplice(fd, &iov, 1, 0);
      if (k < 0) {
        if (errno == EINTR) continue;
        fail("vmsplice");
      }
      p += k;
      n -= static_cast<std::size_t>(k);
    }
  }
};

struct reader_end : channel_end {
  userpipe::reader r;
  explicit reader_end(userpipe::reader rr) : r(std::move(rr)) {}
  std::size_t read_some(std::byte* p, std::size_t n) override { return r.read_some({p, n}); }
  void write_all(std::byte const*, std::size_t) override { throw std::logic_error("write to a reader"); }
  void close() override { r.close(); }
};

struct writer_end : channel_end {
  userpipe::writer w;
  explicit writer_end(userpipe::writer ww) : w(std::move(ww)) {}
  std::size_t read_some(std::byte*, std::size_t) override { throw std::logic_error("read from a writer"); }
  void write_all(std::byte const* p, std::size_t n) override { w.write({p, n}); }
  void close() override { w.close(); }
};

// ---- competitors ---------------------------------------------------------------

enum class kind {
  userpipe_shared,
  userpipe_shared_1m,
  userpipe_inprocess,
  kernel_pipe,
  kernel_pipe_1m,
  socketpair,
  vmsplice
};

char const* name_of(kind k) {
  switch (k) {
    case kind::userpipe_shared:
      return "userpipe_shared";
    case kind::userpipe_shared_1m:
      return "userpipe_shared_1m";
    case kind::userpipe_inprocess:
      return "userpipe_inprocess";
    case kind::kernel_pipe:
      return "kernel_pipe";
    case kind::kernel_pipe_1m:
      return "kernel_pipe_1m";
    case kind::socketpair:
      return "socketpair";
    case kind::vmsplice:
      return "vmsplice";
  }
  return "?";
}

bool is_userpipe(kind k) { return k == kind::userpipe_shared || k == kind::userpipe_shared_1m; }

/// One direction of a channel: this process's end, and the other side's,
/// either as a descriptor for a child (theirs_fd) or, in process, an end.
struct link {
  std::unique_ptr<channel_end> mine;
  int theirs_fd = -1;
  std::unique_ptr<channel_end> theirs;
  link() = default;
  link(link&& o) noexcept
      : mine(std::move(o.mine)), theirs_fd(std::exchange(o.theirs_fd, -1)), theirs(std::move(o.theirs)) {}
  ~link() { close_theirs_fd(); }
  void close_theirs_fd() {
    if (theirs_fd >= 0) ::close(theirs_fd);
    theirs_fd = -1;
  }
};

link make_link(kind k, bool i_write) {
  link l;
  switch (k) {
    case kind::userpipe_inprocess: {
      auto [r, w] = userpipe::make_pipe({.capacity = 65536});
      std::unique_ptr<channel_end> re = std::make_unique<reader_end>(std::move(r));
      std::unique_ptr<channel_end> we = std::make_unique<writer_end>(std::move(w));
      l.mine = i_write ? std::move(we) : std::move(re);
      l.theirs = i_write ? std::move(re) : std::move(we);
      return l;
    }
    case kind::userpipe_shared:
    case kind::userpipe_shared_1m: {
      std::size_t const capacity = k == kind::userpipe_shared ? 65536 : 1 << 20;
      auto [r, w] = userpipe::make_pipe({.capacity = capacity, .shared = true});
      if (i_write) {
        l.mine = std::make_unique<writer_end>(std::move(w));
        l.theirs_fd = userpipe::to_descriptor(std::move(r));
      } else {
        l.mine = std::make_unique<reader_end>(std::move(r));
        l.theirs_fd = userpipe::to_descriptor(std::move(w));
      }
      return l;
    }
    case kind::kernel_pipe:
    case kind::kernel_pipe_1m:
    case kind::vmsplice: {
      int fds[2];
      if (::pipe2(fds, O_CLOEXEC) != 0) fail("pipe2");
      if (k == kind::kernel_pipe_1m && ::fcntl(fds[1], F_SETPIPE_SZ, 1 << 20) < 0) {
        ::close(fds[0]);
        ::close(fds[1]);
        fail("F_SETPIPE_SZ");
      }
      if (i_write) {
        l.mine =
            k == kind::vmsplice ? std::make_unique<vmsplice_end>(fds[1]) : std::make_unique<fd_end>(fds[1]);
        l.theirs_fd = fds[0];
      } else {
        l.mine = std::make_unique<fd_end>(fds[0]);
        l.theirs_fd = fds[1];
      }
      return l;
    }
    case kind::socketpair: {
      int fds[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) fail("socketpair");
      l.mine = std::make_unique<fd_end>(fds[0]);
      l.theirs_fd = fds[1];
      return l;
    }
  }
  throw std::logic_error("kind");
}

/// How the child turns descriptor 3 or 4 back into an end.
std::string child_kind(kind k) { return is_userpipe(k) ? "userpipe" : "fd"; }

std::unique_ptr<channel_end> adopt(std::string_view how, int fd, bool writes) {
  if (how == "fd") return std::make_unique<fd_end>(fd);
  if (how == "userpipe") {
    if (writes) return std::make_unique<writer_end>(userpipe::adopt_writer(fd));
    return std::make_unique<reader_end>(userpipe::adopt_reader(fd));
  }
  throw std::invalid_argument("adopt: unknown kind");
}

// ---- the child's side ------------------------------------------------------------

/// Reads to EOF; returns the byte count.
std::uint64_t sink(channel_end& in) {
  std::vector<std::byte> buf(read_buffer_size);
  std::uint64_t total = 0;
  while (std::size_t n = in.read_some(buf.data(), buf.size())) total += n;
  return total;
}

/// Sends every `size`-byte message back until EOF; returns the messages.
std::uint64_t echo(channel_end& in, channel_end& out, std::size_t size) {
  std::vector<std::byte> buf(size);
  std::uint64_t count = 0;
  while (in.read_exact(buf.data(), size) == size) {
    out.write_all(buf.data(), size);
    ++count;
  }
  out.close();
  return count;
}

void write_u64(int fd, std::uint64_t v) {
  if (::write(fd, &v, sizeof v) != sizeof v) fail("write result");
}

std::uint64_t read_u64(int fd) {
  std::uint64_t v = 0;
  std::size_t got = 0;
  while (got < sizeof v) {
    ssize_t k = ::read(fd, reinterpret_cast<char*>(&v) + got, sizeof v - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) throw std::runtime_error("child sent no result");
    got += static_cast<std::size_t>(k);
  }
  return v;
}

/// `--shm-child MODE KIND [ARG]`:
///   sink KIND             read fd 3 to EOF, write the count (u64) to fd 4
///   echo KIND SIZE        fd 3 -> fd 4, SIZE-byte messages, until EOF
///   produce KIND FD BYTES write BYTES to FD in 64 KiB writes
///   hold KIND reader|writer  take fd 3, write one byte to fd 4, pause
int child_main(int argc, char** argv) try {
  if (argc < 4) throw std::invalid_argument("usage: --shm-child MODE KIND [ARG...]");
  std::string_view const mode = argv[2], how = argv[3];
  if (mode == "sink") {
    auto in = adopt(how, 3, false);
    write_u64(4, sink(*in));
  } else if (mode == "echo" && argc >= 5) {
    auto in = adopt(how, 3, false);
    auto out = adopt(how, 4, true);
    echo(*in, *out, std::strtoull(argv[4], nullptr, 10));
  } else if (mode == "produce" && argc >= 6) {
    auto out = adopt(how, std::atoi(argv[4]), true);
    std::uint64_t left = std::strtoull(argv[5], nullptr, 10);
    std::vector<std::byte> chunk(read_buffer_size, std::byte{'o'});
    while (left != 0) {
      std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, chunk.size()));
      out->write_all(chunk.data(), n);
      left -= n;
    }
    out->close();
  } else if (mode == "hold" && argc >= 5) {
    auto end = adopt(how, 3, std::string_view(argv[4]) == "writer");
    char const ready = 'r';
    if (::write(4, &ready, 1) != 1) fail("write ready");
    for (;;) ::pause();
  } else {
    throw std::invalid_argument("unknown child mode");
  }
  return 0;
} catch (std::exception const& e) {
  std::fprintf(stderr, "shm_bench child: %s\n", e.what());
  return 1;
}

// ---- the parent's side -----------------------------------------------------------

/// A child of this binary; killed (SIGKILL) and reaped if not waited for.
class process {
 public:
  /// Starts `--shm-child args...` with each (target, source) descriptor
  /// at `target` in the child and nothing else above 2.
  process(std::vector<std::string> args, std::vector<std::pair<int, int>> fds) {
    std::vector<int> moved;  // out of the way of the targets first
    for (auto [target, source] : fds) {
      int t = ::fcntl(source, F_DUPFD_CLOEXEC, 10);
      if (t < 0) {
        for (int m : moved) ::close(m);
        fail("F_DUPFD_CLOEXEC");
      }
      moved.push_back(t);
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    for (std::size_t i = 0; i < fds.size(); ++i)
      posix_spawn_file_actions_adddup2(&actions, moved[i], fds[i].first);
    posix_spawn_file_actions_addclosefrom_np(&actions, 5);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t defaults;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);  // ignored here, default there
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
    std::string const self = self_path();
    args.insert(args.begin(), {self, "--shm-child"});
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int rc = ::posix_spawn(&pid_, self.c_str(), &actions, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    for (int m : moved) ::close(m);
    if (rc != 0) {
      errno = rc;
      fail("posix_spawn");
    }
  }
  process(process const&) = delete;
  ~process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      reap();
    }
  }
  pid_t pid() const { return pid_; }
  /// Reaps the child; throws unless it exited with 0.
  void wait_success() {
    int status = reap();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("child failed");
  }
  /// Reaps the child; returns the wait status.
  int reap() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_ = -1;
};

double seconds(timeval tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6; }

/// CPU seconds of this process and of its reaped children since creation.
struct cpu_meter {
  double self0, children0;
  cpu_meter() { read(self0, children0); }
  static void read(double& self, double& children) {
    rusage s{}, c{};
    getrusage(RUSAGE_SELF, &s);
    getrusage(RUSAGE_CHILDREN, &c);
    self = seconds(s.ru_utime) + seconds(s.ru_stime);
    children = seconds(c.ru_utime) + seconds(c.ru_stime);
  }
  /// Sets the cpu_s_per_GiB counters for `bytes` moved.
  void report(benchmark::State& state, std::uint64_t bytes) const {
    double self, children;
    read(self, children);
    double const gib = static_cast<double>(bytes) / static_cast<double>(1ull << 30);
    if (gib == 0) return;
    state.counters["parent_cpu_s_per_GiB"] = (self - self0) / gib;
    state.counters["child_cpu_s_per_GiB"] = (children - children0) / gib;
    state.counters["cpu_s_per_GiB"] = (self - self0 + children - children0) / gib;
  }
};

/// Page-aligned bytes (vmsplice lends whole pages).
struct buffer {
  std::byte* data;
  explicit buffer(std::size_t n, std::byte fill)
      : data(static_cast<std::byte*>(std::aligned_alloc(4096, (n + 4095) / 4096 * 4096))) {
    if (data == nullptr) throw std::bad_alloc();
    std::memset(data, static_cast<int>(fill), n);
  }
  ~buffer() { std::free(data); }
};

void stream(benchmark::State& state, kind k) {
  std::size_t const size = static_cast<std::size_t>(state.range(0));
  cpu_meter cpu;
  std::uint64_t received = 0;
  try {
    buffer chunk(size, std::byte{'x'});
    link l = make_link(k, true);
    if (l.theirs) {
      std::thread peer([&, in = l.theirs.get()] { received = sink(*in); });
      struct joiner {
        std::thread& t;
        link& l;
        ~joiner() {
          l.mine->close();
          t.join();
        }
      } join{peer, l};
      for (auto _ : state) l.mine->write_all(chunk.data, size);
    } else {
      int result[2];
      if (::pipe2(result, O_CLOEXEC) != 0) fail("pipe2");
      fd_end result_in(result[0]), result_out(result[1]);
      process child({"sink", child_kind(k)}, {{3, l.theirs_fd}, {4, result_out.fd}});
      l.close_theirs_fd();
      result_out.close();
      for (auto _ : state) l.mine->write_all(chunk.data, size);
      l.mine->close();
      received = read_u64(result_in.fd);
      child.wait_success();
    }
  } catch (std::exception const& e) {
    state.SkipWithError(e.what());
    return;
  }
  std::uint64_t const sent = state.iterations() * size;
  if (received != sent) {
    state.SkipWithError(
        ("bytes lost: sent " + std::to_string(sent) + ", received " + std::to_string(received)).c_str());
    return;
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(sent));
  cpu.report(state, sent);
}

/// The nearest-rank percentile: of 100 samples, p99 is the 99th smallest.
double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  auto const rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size())));
  std::size_t const i = std::clamp<std::size_t>(rank, 1, v.size()) - 1;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return v[i];
}

void ping_pong(benchmark::State& state, kind k) {
  std::vector<double> rtt;  // microseconds
  rtt.reserve(1 << 22);
  std::uint64_t echoed = 0;
  bool replies_ok = true;
  try {
    link there = make_link(k, true), back = make_link(k, false);
    std::byte msg[ping_size], reply[ping_size];
    std::memset(msg, 'p', sizeof msg);
    auto loop = [&] {
      for (auto _ : state) {
        auto t0 = clock_type::now();
        there.mine->write_all(msg, ping_size);
        if (back.mine->read_exact(reply, ping_size) != ping_size)
          throw std::runtime_error("echo ended early");
        auto t1 = clock_type::now();
        rtt.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        replies_ok &= std::memcmp(msg, reply, ping_size) == 0;
      }
      there.mine->close();
      // The echo closes its end after its last reply: nothing more arrives.
      if (back.mine->read_some(reply, ping_size) != 0) replies_ok = false;
    };
    if (there.theirs) {
      std::thread peer(
          [&, in = there.theirs.get(), out = back.theirs.get()] { echoed = echo(*in, *out, ping_size); });
      struct joiner {
        std::thread& t;
        link& l;
        ~joiner() {
          l.mine->close();
          t.join();
        }
      } join{peer, there};
      loop();
    } else {
      process child({"echo", child_kind(k), std::to_string(ping_size)},
                    {{3, there.theirs_fd}, {4, back.theirs_fd}});
      there.close_theirs_fd();
      back.close_theirs_fd();
      loop();
      child.wait_success();
      echoed = state.iterations();  // the child read every message, or a reply would be missing
    }
  } catch (std::exception const& e) {
    state.SkipWithError(e.what());
    return;
  }
  if (!replies_ok || echoed != state.iterations()) {
    state.SkipWithError("a reply differs or is missing");
    return;
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["p50_us"] = percentile(rtt, 0.50);
  state.counters["p99_us"] = percentile(rtt, 0.99);
}

// ---- a child's output ------------------------------------------------------------

std::uint64_t child_output_bytes() {
  char const* v = std::getenv("USERPIPE_SHM_CHILD_MIB");
  return (v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : 1024) << 20;
}

enum class output_competitor { kernel_pipe, userpipe_pump, userpipe_shared };

void child_output(benchmark::State& state, output_competitor which) {
  std::uint64_t const bytes = child_output_bytes();
  std::string const count = std::to_string(bytes);
  cpu_meter cpu;
  std::uint64_t moved = 0;
  try {
    for (auto _ : state) {
      std::uint64_t got = 0;
      if (which == output_competitor::kernel_pipe) {
        link l = make_link(kind::kernel_pipe, false);
        process child({"produce", "fd", "1", count}, {{1, l.theirs_fd}});
        l.close_theirs_fd();
        std::vector<std::byte> buf(read_buffer_size);
        while (std::size_t n = l.mine->read_some(buf.data(), buf.size())) {
          benchmark::DoNotOptimize(buf.data());
          got += n;
        }
        child.wait_success();
      } else if (which == output_competitor::userpipe_pump) {
        auto c = userpipe::spawn({self_path(), "--shm-child", "produce", "fd", "1", count},
                                 {.out = userpipe::stdio::pipe, .search_path = false});
        got = bench::drain(c.out());
        if (!c.wait().success()) throw std::runtime_error("child failed");
      } else {
        auto [r, w] = userpipe::make_pipe({.capacity = 65536, .shared = true});
        fd_end handover(userpipe::to_descriptor(std::move(w)));
        auto c = userpipe::spawn({self_path(), "--shm-child", "produce", "userpipe", "3", count},
                                 {.search_path = false, .descriptors = {{3, handover.fd}}});
        handover.close();  // the child has its own copy now
        got = bench::drain(r);
        if (!c.wait().success()) throw std::runtime_error("child failed");
      }
      if (got != bytes) throw std::runtime_error("bytes lost: received " + std::to_string(got));
      moved += got;
    }
  } catch (std::exception const& e) {
    state.SkipWithError(e.what());
    return;
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(moved));
  cpu.report(state, moved);
}

// ---- a dead peer -----------------------------------------------------------------

std::size_t kill_count() {
  char const* v = std::getenv("USERPIPE_SHM_KILLS");
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : 100;
}

/// Fills the channel until a write would block.
void fill(channel_end& end) {
  if (auto* w = dynamic_cast<writer_end*>(&end)) {
    std::byte chunk[4096] = {};
    std::error_code ec;
    while (!ec) w->w.try_write_some({chunk, sizeof chunk}, ec);
    if (ec != std::errc::resource_unavailable_try_again) throw std::system_error(ec, "fill");
    return;
  }
  int const fd = dynamic_cast<fd_end&>(end).fd;
  int const flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  std::byte chunk[4096] = {};
  while (::write(fd, chunk, sizeof chunk) > 0) {
  }
  int const err = errno;
  ::fcntl(fd, F_SETFL, flags);
  if (err != EAGAIN) {
    errno = err;
    fail("fill");
  }
}

/// `waitpid`: the floor under every competitor, the same child killed while
/// this process waits for its death itself (waitpid returns once it is a
/// zombie, after the kernel has closed its descriptors).
void dead_peer(benchmark::State& state, kind k, bool reader_blocked, bool waitpid = false) {
  std::vector<double> latency;  // microseconds
  try {
    for (auto _ : state) {
      link l = make_link(k, !reader_blocked);
      int ready[2];
      if (::pipe2(ready, O_CLOEXEC) != 0) fail("pipe2");
      fd_end ready_in(ready[0]), ready_out(ready[1]);
      process child({"hold", child_kind(k), reader_blocked ? "writer" : "reader"},
                    {{3, l.theirs_fd}, {4, ready_out.fd}});
      l.close_theirs_fd();
      ready_out.close();
      std::byte b{};
      if (ready_in.read_some(&b, 1) != 1) throw std::runtime_error("child not ready");
      if (!reader_blocked) fill(*l.mine);

      std::atomic<clock_type::rep> killed_at{0};
      std::thread killer([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));  // long asleep by then
        killed_at = clock_type::now().time_since_epoch().count();
        ::kill(child.pid(), SIGKILL);
      });
      struct joiner {
        std::thread& t;
        ~joiner() {
          if (t.joinable()) t.join();
        }
      } join{killer};
      bool closed = false;
      if (waitpid) {
        closed = WIFSIGNALED(child.reap());
      } else if (reader_blocked) {
        closed = l.mine->read_some(&b, 1) == 0;  // EOF
      } else {
        try {
          l.mine->write_all(&b, 1);
        } catch (std::system_error const& e) {
          closed = e.code() == std::errc::broken_pipe;
        }
      }
      auto const returned = clock_type::now().time_since_epoch().count();
      killer.join();
      if (!closed) throw std::runtime_error("the survivor did not see a closed peer");
      double const us =
          std::chrono::duration<double, std::micro>(clock_type::duration(returned - killed_at.load()))
              .count();
      latency.push_back(us);
      state.SetIterationTime(us * 1e-6);
      if (!waitpid) child.reap();
    }
  } catch (std::exception const& e) {
    state.SkipWithError(e.what());
    return;
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["p50_us"] = percentile(latency, 0.50);
  state.counters["p99_us"] = percentile(latency, 0.99);
  state.counters["max_us"] = *std::max_element(latency.begin(), latency.end());
}

void register_all() {
  std::vector<kind> const stream_kinds = {kind::userpipe_shared,    kind::userpipe_shared_1m,
                                          kind::userpipe_inprocess, kind::kernel_pipe,
                                          kind::kernel_pipe_1m,     kind::socketpair};
  for (std::int64_t size : {64, 4096, 65536, 1 << 20}) {
    for (kind k : stream_kinds)
      benchmark::RegisterBenchmark(
          ("process_stream/" + std::string(name_of(k)) + "/" + std::to_string(size)).c_str(),
          [k](benchmark::State& s) { stream(s, k); })
          ->Arg(size)
          ->UseRealTime()
          ->MinTime(0.3);
    if (size == 65536)
      benchmark::RegisterBenchmark("process_stream/vmsplice/65536",
                                   [](benchmark::State& s) { stream(s, kind::vmsplice); })
          ->Arg(size)
          ->UseRealTime()
          ->MinTime(0.3);
  }
  for (kind k : {kind::userpipe_shared, kind::userpipe_inprocess, kind::kernel_pipe, kind::socketpair})
    benchmark::RegisterBenchmark(("ping_pong/" + std::string(name_of(k)) + "/64").c_str(),
                                 [k](benchmark::State& s) { ping_pong(s, k); })
        ->UseRealTime()
        ->MinTime(0.3);
  std::string const mib = std::to_string(child_output_bytes() >> 20) + "MiB";
  for (auto [name, which] : {std::pair{"userpipe_shared", output_competitor::userpipe_shared},
                             std::pair{"kernel_pipe", output_competitor::kernel_pipe},
                             std::pair{"userpipe_pump", output_competitor::userpipe_pump}})
    benchmark::RegisterBenchmark(("child_output/" + std::string(name) + "/" + mib).c_str(),
                                 [which = which](benchmark::State& s) { child_output(s, which); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(1);
  for (kind k : {kind::userpipe_shared, kind::kernel_pipe})
    for (bool reader_blocked : {true, false})
      benchmark::RegisterBenchmark(
          ("dead_peer/" + std::string(name_of(k)) + "/" +
           (reader_blocked ? "reader_blocked" : "writer_blocked"))
              .c_str(),
          [k, reader_blocked](benchmark::State& s) { dead_peer(s, k, reader_blocked); })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond)
          ->Iterations(static_cast<benchmark::IterationCount>(kill_count()));
  benchmark::RegisterBenchmark("dead_peer/waitpid/reader_blocked",
                               [](benchmark::State& s) { dead_peer(s, kind::kernel_pipe, true, true); })
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond)
      ->Iterations(static_cast<benchmark::IterationCount>(kill_count()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string_view(argv[1]) == "--shm-child") return child_main(argc, argv);
  ::signal(SIGPIPE, SIG_IGN);  // a write to a dead reader's kernel pipe is EPIPE, not death
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
