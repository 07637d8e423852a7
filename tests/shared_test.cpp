// The promises of userpipe/shared.hpp: a shared pipe keeps the kernel
// pipe's promises between processes, a dead peer reads as closed, nothing
// the peer can write is trusted, nothing leaks. The other process is
// tests/shm_child.cpp, started with spawn (which kills and reaps it on
// every path when its handle goes).
//
// USERPIPE_SHM_MIB sizes the volume test (default 1024 MiB each way; the
// sanitizer builds set less).
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <userpipe/asio.hpp>
#include <userpipe/process.hpp>
#include <userpipe/shared.hpp>
#include <vector>

#include "support/bytes.hpp"
#include "support/get_within.hpp"
#include "support/pattern.hpp"

using namespace std::chrono_literals;
using namespace userpipe;
using userpipe_support::bytes;
using userpipe_support::get_within;
using userpipe_support::pattern;

namespace {

std::string const helper = USERPIPE_SHM_CHILD;

std::uint64_t volume_mib() {
  if (char const* v = std::getenv("USERPIPE_SHM_MIB")) return std::strtoull(v, nullptr, 10);
  return 1024;
}

/// The child with the descriptor `fd` as its 3 (closed here after spawn).
child start(std::vector<std::string> args, int fd, int fd2 = -1) {
  std::vector<std::string> argv{helper};
  argv.insert(argv.end(), args.begin(), args.end());
  spawn_options opts{.descriptors = {{3, fd}}};
  if (fd2 >= 0) opts.descriptors.push_back({4, fd2});
  child c = spawn(argv, opts);
  ::close(fd);
  if (fd2 >= 0) ::close(fd2);
  return c;
}

int count_descriptors() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d) != nullptr) ++n;
    ::closedir(d);
  }
  return n;
}

/// Runs f on a thread and returns its future: the test fails (and aborts)
/// if it does not finish in `limit`, which only a hang can exceed.
template <class F>
auto async(F f) {
  return std::async(std::launch::async, std::move(f));
}

// ---- the heap pipe's promises, with the other end in a child ---------------

TEST(SharedPipe, SameTypesWorkInOneProcess) {
  auto [r, w] = make_pipe({.capacity = 1 << 16, .shared = true});
  EXPECT_TRUE(is_shared(r));
  EXPECT_TRUE(is_shared(w));
  auto f = async([&w] {
    pattern::write(w, 8 << 20, 7);
    w.close();
  });
  EXPECT_TRUE(pattern::read_and_check(r, 8 << 20, 7));
  get_within(f);
}

TEST(SharedPipe, MirroredCombinesWithShared) {
  auto [r, w] = make_pipe({.capacity = 4096, .mirrored = true, .shared = true});
  writer w2 = adopt_writer(to_descriptor(std::move(w)));
  w2.write(std::string(3000, 'a'));
  std::string got(3000, '\0');
  r.read(bytes(got));
  w2.write(std::string(3000, 'b'));  // wraps the ring's end
  auto span = r.peek();
  EXPECT_EQ(span.size(), 3000u);  // one contiguous span across the wrap
  EXPECT_EQ(userpipe_support::text(span), std::string(3000, 'b'));
}

TEST(SharedPipe, ChildReadsEveryByteInOrderThenEof) {
  auto [r, w] = make_pipe({.capacity = 1 << 16, .shared = true});
  child c = start({"sink", "3", std::to_string(64 << 20), "11"}, to_descriptor(std::move(r)));
  pattern::write(w, 64 << 20, 11);
  w.close();
  EXPECT_TRUE(c.wait().success());
}

TEST(SharedPipe, ParentReadsChildsBytesThenEof) {
  auto [r, w] = make_pipe({.capacity = 1 << 16, .shared = true});
  child c = start({"source", "3", std::to_string(64 << 20), "12"}, to_descriptor(std::move(w)));
  EXPECT_TRUE(pattern::read_and_check(r, 64 << 20, 12));
  EXPECT_TRUE(c.wait().success());
}

TEST(SharedPipe, GibibyteEachWayEveryByteChecked) {
  std::uint64_t const total = volume_mib() << 20;
  auto [to_child_r, to_child_w] = make_pipe({.capacity = 1 << 20, .shared = true});
  auto [from_child_r, from_child_w] = make_pipe({.capacity = 1 << 20, .shared = true});
  child c = start({"duplex", "3", "4", std::to_string(total), "21"}, to_descriptor(std::move(to_child_r)),
                  to_descriptor(std::move(from_child_w)));
  auto sender = async([&, w = std::move(to_child_w)]() mutable {
    pattern::write(w, total, 21);
    w.close();
  });
  EXPECT_TRUE(pattern::read_and_check(from_child_r, total, 22));
  get_within(sender, 600s);
  EXPECT_TRUE(c.wait().success());
}

TEST(SharedPipe, WriterCloseReasonReachesReaderAfterLastByte) {
  auto [r, w] = make_pipe({.shared = true});
  child c = start({"close-writer", "3", std::to_string(ECONNABORTED)}, to_descriptor(std::move(w)));
  std::string buf(3, '\0');
  EXPECT_EQ(r.read(bytes(buf)), 3u);
  EXPECT_EQ(buf, "abc");
  std::error_code ec;
  EXPECT_EQ(r.read_some(bytes(buf), ec), 0u);
  EXPECT_EQ(ec, std::errc::connection_aborted);
  EXPECT_TRUE(c.wait().success());
}

TEST(SharedPipe, PlainWriterCloseIsEof) {
  auto [r, w] = make_pipe({.shared = true});
  child c = start({"close-writer", "3", "0"}, to_descriptor(std::move(w)));
  EXPECT_EQ(userpipe_support::read_all(r), "abc");
  EXPECT_TRUE(c.wait().success());
}

TEST(SharedPipe, ReaderCloseGivesBrokenPipe) {
  auto [r, w] = make_pipe({.capacity = 4096, .shared = true});
  child c = start({"close-reader", "3", "0"}, to_descriptor(std::move(r)));
  w.write("abc");
  std::error_code ec;
  std::string const block(4096, 'x');
  for (int i = 0; i < 1000 && !ec; ++i) w.write(block, ec);
  EXPECT_EQ(ec, std::errc::broken_pipe);
  EXPECT_TRUE(c.wait().success());
  EXPECT_TRUE(w.reader_closed());
}

TEST(SharedPipe, ReaderCloseReasonReachesWriter) {
  auto [r, w] = make_pipe({.capacity = 4096, .shared = true});
  child c = start({"close-reader", "3", std::to_string(ECONNRESET)}, to_descriptor(std::move(r)));
  w.write("abc");
  EXPECT_TRUE(c.wait().success());
  std::error_code ec;
  w.write("more", ec);
  EXPECT_EQ(ec, std::errc::connection_reset);
}

TEST(SharedPipe, TimeoutsAndTryCallsAcrossProcesses) {
  auto [r, w] = make_pipe({.capacity = 4096, .shared = true});
  auto [r2, w2] = make_pipe({.capacity = 4096, .shared = true});
  child holder = start({"hold", "3", "writer"}, to_descriptor(std::move(w)));
  child holder2 = start({"hold", "3", "reader"}, to_descriptor(std::move(r2)));
  std::string buf(16, '\0');
  std::error_code ec;
  EXPECT_EQ(r.try_read_some(bytes(buf), ec), 0u);
  EXPECT_EQ(ec, std::errc::resource_unavailable_try_again);
  EXPECT_EQ(r.read_some_for(bytes(buf), 10ms, ec), 0u);
  EXPECT_EQ(ec, std::errc::timed_out);
  std::string const block(4096, 'x');
  EXPECT_EQ(w2.try_write_some(bytes(block), ec), 4096u);
  EXPECT_EQ(w2.try_write_some(bytes(block), ec), 0u);
  EXPECT_EQ(ec, std::errc::resource_unavailable_try_again);
  EXPECT_EQ(w2.write_for(bytes(block), 10ms, ec), 0u);
  EXPECT_EQ(ec, std::errc::timed_out);
  // And once the holders are gone, the try_ calls say so instead of "again".
  holder.kill(SIGKILL);
  holder.wait();
  holder2.kill(SIGKILL);
  holder2.wait();
  EXPECT_EQ(r.try_read_some(bytes(buf), ec), 0u);
  EXPECT_FALSE(ec);  // EOF
  EXPECT_EQ(w2.try_write_some(bytes(block), ec), 0u);
  EXPECT_EQ(ec, std::errc::broken_pipe);
}

TEST(SharedPipe, EndsHandedOverBySpawnFromPosixSpawnToo) {
  // The plain fork+exec idiom: dup2 the descriptor to a known number.
  auto [r, w] = make_pipe({.shared = true});
  int const fd = to_descriptor(std::move(w));
  pid_t const pid = ::fork();
  if (pid == 0) {
    ::dup2(fd, 3);
    ::execl(helper.c_str(), helper.c_str(), "close-writer", "3", "0", nullptr);
    ::_exit(127);
  }
  ::close(fd);
  ASSERT_GT(pid, 0);
  EXPECT_EQ(userpipe_support::read_all(r), "abc");
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

// ---- a dead peer is a closed peer ------------------------------------------

/// Waits (boundedly) until the end's owner has gone to sleep, so that the
/// kill below finds it asleep; kills anyway after the bound.
template <class Stats>
void wait_until_asleep(Stats stats, std::uint64_t before) {
  for (int i = 0; i < 2000 && stats() == before; ++i) std::this_thread::sleep_for(100us);
}

TEST(DeadPeer, KilledWriterIsEofForBlockedReader) {
  for (int round = 0; round < 100; ++round) {
    auto [r, w] = make_pipe({.capacity = 1 << 16, .shared = true});
    child c = start({"write-then-hang", "3", "1000"}, to_descriptor(std::move(w)));
    std::string buf(1000, '\0');
    ASSERT_EQ(r.read(bytes(buf)), 1000u);
    auto const before = r.stats().reader_sleeps;
    auto got = async([&r] {
      std::string b(16, '\0');
      std::error_code ec;
      std::size_t const n = r.read_some(bytes(b), ec);
      return std::make_pair(n, ec);
    });
    wait_until_asleep([&r] { return r.stats().reader_sleeps; }, before);
    c.kill(SIGKILL);
    auto [n, ec] = get_within(got, 5s);
    EXPECT_EQ(n, 0u);
    EXPECT_FALSE(ec) << ec.message();
    c.wait();
  }
}

TEST(DeadPeer, KilledWriterMidStreamIsEofAfterEveryCommittedByte) {
  std::mt19937 random(5);
  for (int round = 0; round < 100; ++round) {
    auto [r, w] = make_pipe({.capacity = 1 << 16, .shared = true});
    child c = start({"stream-forever", "3", "31"}, to_descriptor(std::move(w)));
    auto got = async([&r] {
      std::uint64_t done = 0;
      bool const right = pattern::read_prefix(r, done, 31);
      return std::make_pair(right, done);
    });
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 3000));
    c.kill(SIGKILL);
    auto [right, done] = get_within(got, 5s);
    EXPECT_TRUE(right);
    // Every byte the writer published was read: nothing is left behind EOF.
    EXPECT_EQ(r.stats().bytes_written, done);
    c.wait();
  }
}

TEST(DeadPeer, KilledReaderIsBrokenPipeForBlockedWriter) {
  for (int round = 0; round < 100; ++round) {
    auto [r, w] = make_pipe({.capacity = 4096, .shared = true});
    child c = start({"hold", "3", "reader"}, to_descriptor(std::move(r)));
    auto const before = w.stats().writer_sleeps;
    auto got = async([&w] {
      std::error_code ec;
      std::string const block(8192, 'x');  // more than fits: blocks
      w.write(block, ec);
      return ec;
    });
    wait_until_asleep([&w] { return w.stats().writer_sleeps; }, before);
    c.kill(SIGKILL);
    EXPECT_EQ(get_within(got, 5s), std::errc::broken_pipe);
    c.wait();
  }
}

TEST(DeadPeer, KilledWriterCompletesParkedAsyncRead) {
  for (int round = 0; round < 20; ++round) {
    asio::io_context io;
    auto [r, w] = make_pipe({.shared = true});
    child c = start({"write-then-hang", "3", "10"}, to_descriptor(std::move(w)));
    async_reader in(io, std::move(r));
    std::string buf(64, '\0');
    std::size_t total = 0;
    std::error_code last;
    std::function<void(std::error_code, std::size_t)> on_read = [&](std::error_code ec, std::size_t n) {
      total += n;
      last = ec;
      if (!ec) {
        if (total == 10) c.kill(SIGKILL);  // parked now: the next read waits for the dead writer
        in.async_read_some(asio::buffer(buf), on_read);
      }
    };
    in.async_read_some(asio::buffer(buf), on_read);
    auto ran = async([&io] { return io.run(); });
    get_within(ran, 5s);
    EXPECT_EQ(total, 10u);
    EXPECT_EQ(last, asio::error::eof);
    c.wait();
  }
}

TEST(DeadPeer, ClosedUnadoptedDescriptorIsAHangUp) {
  auto [r, w] = make_pipe({.shared = true});
  ::close(to_descriptor(std::move(w)));
  std::string buf(8, '\0');
  std::error_code ec;
  EXPECT_EQ(r.read_some(bytes(buf), ec), 0u);
  EXPECT_FALSE(ec);
}

// ---- nothing shared is trusted -----------------------------------------------

std::system_error adopt_error(int fd) {
  try {
    adopt_reader(fd);
  } catch (std::system_error const& e) {
    return e;
  }
  ADD_FAILURE() << "adopted a wrong descriptor";
  return std::system_error(std::error_code());
}

TEST(WrongDescriptor, RegularFileIsInvalidArgument) {
  int const fd = ::open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  EXPECT_EQ(adopt_error(fd).code(), std::errc::invalid_argument);
}

TEST(WrongDescriptor, PipeIsInvalidArgument) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  ::close(p[1]);
  EXPECT_EQ(adopt_error(p[0]).code(), std::errc::invalid_argument);
}

TEST(WrongDescriptor, StreamSocketIsInvalidArgument) {
  int s[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
  ::close(s[1]);
  EXPECT_EQ(adopt_error(s[0]).code(), std::errc::invalid_argument);
}

TEST(WrongDescriptor, EmptyEnvelopeIsInvalidArgument) {
  int s[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, s), 0);
  EXPECT_EQ(adopt_error(s[0]).code(), std::errc::invalid_argument);
  ::close(s[1]);
}

TEST(WrongDescriptor, ClosedDescriptorIsBadFileDescriptor) {
  EXPECT_EQ(adopt_error(-1).code(), std::errc::bad_file_descriptor);
}

TEST(WrongDescriptor, OtherEndsHandoverIsProtocolError) {
  auto [r, w] = make_pipe({.shared = true});
  EXPECT_EQ(adopt_error(to_descriptor(std::move(w))).code(), std::errc::protocol_error);
}

/// The handshake as src/shared.cpp lays it out (a test of the format, so
/// spelled out here on purpose).
struct handshake {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t role;
  std::uint64_t capacity;
  std::uint32_t header_size;
  std::uint32_t mirrored;
  std::uint32_t generation;
  std::uint32_t reserved;
};

/// Opens an envelope: the handshake and the two descriptors.
struct opened {
  handshake hello{};
  int memfd = -1;
  int socket = -1;
};

opened open_envelope(int fd) {
  opened o;
  iovec iov{&o.hello, sizeof o.hello};
  alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  EXPECT_EQ(::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC), ssize_t(sizeof o.hello));
  int fds[2];
  std::memcpy(fds, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof fds);
  o.memfd = fds[0];
  o.socket = fds[1];
  ::close(fd);
  return o;
}

/// Seals an envelope again around whatever the test forged; returns it.
int seal_envelope(void const* hello, std::size_t size, std::vector<int> fds) {
  int s[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, s), 0);
  iovec iov{const_cast<void*>(hello), size};
  alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
  }
  EXPECT_GE(::sendmsg(s[0], &msg, 0), 0);
  ::close(s[0]);
  for (int fd : fds) ::close(fd);
  return s[1];
}

TEST(WrongDescriptor, GarbageHandshakeIsProtocolError) {
  char garbage[40];
  std::memset(garbage, 0x5a, sizeof garbage);
  EXPECT_EQ(adopt_error(seal_envelope(garbage, sizeof garbage, {})).code(), std::errc::protocol_error);
  auto [r, w] = make_pipe({.shared = true});
  opened o = open_envelope(to_descriptor(std::move(r)));
  EXPECT_EQ(adopt_error(seal_envelope(garbage, sizeof garbage, {o.memfd, o.socket})).code(),
            std::errc::protocol_error);
}

TEST(WrongDescriptor, OtherVersionIsProtocolError) {
  auto [r, w] = make_pipe({.shared = true});
  opened o = open_envelope(to_descriptor(std::move(r)));
  o.hello.version += 1;
  EXPECT_EQ(adopt_error(seal_envelope(&o.hello, sizeof o.hello, {o.memfd, o.socket})).code(),
            std::errc::protocol_error);
}

TEST(WrongDescriptor, MemfdOfAnotherSizeIsProtocolError) {
  auto [r, w] = make_pipe({.capacity = 65536, .shared = true});
  opened o = open_envelope(to_descriptor(std::move(r)));
  o.hello.capacity = 1 << 20;  // claims more than the memfd holds
  EXPECT_EQ(adopt_error(seal_envelope(&o.hello, sizeof o.hello, {o.memfd, o.socket})).code(),
            std::errc::protocol_error);
}

TEST(WrongDescriptor, UnsealedMemfdIsProtocolError) {
  auto [r, w] = make_pipe({.capacity = 65536, .shared = true});
  opened o = open_envelope(to_descriptor(std::move(r)));
  // A copy of the right size and contents, but shrinkable under us.
  int const copy = ::memfd_create("forged", MFD_CLOEXEC);
  struct stat st{};
  ::fstat(o.memfd, &st);
  ASSERT_EQ(::ftruncate(copy, st.st_size), 0);
  std::vector<char> content(st.st_size);
  ASSERT_EQ(::pread(o.memfd, content.data(), content.size(), 0), ssize_t(content.size()));
  ASSERT_EQ(::pwrite(copy, content.data(), content.size(), 0), ssize_t(content.size()));
  ::close(o.memfd);
  EXPECT_EQ(adopt_error(seal_envelope(&o.hello, sizeof o.hello, {copy, o.socket})).code(),
            std::errc::protocol_error);
}

TEST(WrongDescriptor, CorruptHeaderIsProtocolError) {
  auto [r, w] = make_pipe({.capacity = 65536, .shared = true});
  opened o = open_envelope(to_descriptor(std::move(r)));
  std::uint64_t const garbage = 0xdeadbeef;
  ASSERT_EQ(::pwrite(o.memfd, &garbage, sizeof garbage, 0), ssize_t(sizeof garbage));  // the magic
  EXPECT_EQ(adopt_error(seal_envelope(&o.hello, sizeof o.hello, {o.memfd, o.socket})).code(),
            std::errc::protocol_error);
}

TEST(WrongDescriptor, WrongKindOfLivenessSocketIsProtocolError) {
  auto [r, w] = make_pipe({.shared = true});
  opened o = open_envelope(to_descriptor(std::move(r)));
  int s[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
  ::close(s[1]);
  ::close(o.socket);
  EXPECT_EQ(adopt_error(seal_envelope(&o.hello, sizeof o.hello, {o.memfd, s[0]})).code(), std::errc::protocol_error);
}

TEST(WrongDescriptor, NothingLeaksOnAnyFailure) {
  int const before = count_descriptors();
  for (int i = 0; i < 50; ++i) {
    auto [r, w] = make_pipe({.shared = true});
    opened o = open_envelope(to_descriptor(std::move(r)));
    o.hello.version += 1;
    std::error_code ec;
    reader bad = adopt_reader(seal_envelope(&o.hello, sizeof o.hello, {o.memfd, o.socket}), ec);
    EXPECT_TRUE(ec);
    EXPECT_FALSE(bad.is_open());
  }
  EXPECT_EQ(count_descriptors(), before);
}

// The words of the header as src/shared.cpp lays them out: the indices on
// the second and third cache lines of the memfd.
constexpr off_t head_offset = 64;
constexpr off_t tail_offset = 128;

/// A pipe whose reader the test adopts itself, keeping a way to scribble on
/// the shared header (a mapping of the memfd).
struct scribbled {
  reader r;
  writer w;
  std::uint64_t* words = nullptr;  // the mapped header
  std::size_t size = 0;
};

scribbled make_scribbled(std::size_t capacity) {
  auto [r, w] = make_pipe({.capacity = capacity, .shared = true});
  opened o = open_envelope(to_descriptor(std::move(r)));
  scribbled s;
  s.size = 4096;
  s.words = static_cast<std::uint64_t*>(::mmap(nullptr, s.size, PROT_READ | PROT_WRITE, MAP_SHARED, o.memfd, 0));
  EXPECT_NE(s.words, MAP_FAILED);
  s.r = adopt_reader(seal_envelope(&o.hello, sizeof o.hello, {o.memfd, o.socket}));
  s.w = std::move(w);
  return s;
}

TEST(CorruptHeader, HeadRunningAheadIsProtocolErrorForReader) {
  scribbled s = make_scribbled(4096);
  s.w.write("abc");
  s.words[head_offset / 8] = 1 << 20;  // more than the capacity ahead
  std::string buf(16, '\0');
  std::error_code ec;
  EXPECT_EQ(s.r.read_some(bytes(buf), ec), 0u);
  EXPECT_EQ(ec, std::errc::protocol_error);
  ::munmap(s.words, s.size);
}

TEST(CorruptHeader, TailRunningAheadIsProtocolErrorForWriter) {
  scribbled s = make_scribbled(4096);
  std::string const block(4096, 'x');
  s.w.write(block);
  s.words[tail_offset / 8] = 1ull << 40;
  std::error_code ec;
  auto f = async([&] {
    s.w.write(block, ec);
    return ec;
  });
  EXPECT_EQ(get_within(f, 5s), std::errc::protocol_error);
  EXPECT_FALSE(s.w.write_some(bytes(block), ec));
  EXPECT_EQ(ec, std::errc::protocol_error);
  ::munmap(s.words, s.size);
}

TEST(CorruptHeader, IndexGoingBackwardsIsProtocolError) {
  scribbled s = make_scribbled(4096);
  std::string buf(4096, '\0');
  s.w.write(std::string(4096, 'x'));
  s.r.read(bytes(buf));
  s.w.write(std::string(4096, 'x'));  // the writer has now seen tail 4096
  s.r.read(std::span(bytes(buf).data(), 1000));
  s.words[tail_offset / 8] = 100;  // the reader "unreads"
  std::error_code ec;
  s.w.write(std::string(2000, 'y'), ec);
  EXPECT_EQ(ec, std::errc::protocol_error);
  ::munmap(s.words, s.size);
}

TEST(CorruptHeader, RandomScribblesNeverCrashOrHang) {
  scribbled s = make_scribbled(4096);
  std::atomic<bool> stop{false};
  std::thread scribbler([&] {
    std::mt19937_64 random(9);
    while (!stop.load()) {
      s.words[8 + random() % (512 - 8)] = random() % 3 == 0 ? random() : random() % 8192;
      std::this_thread::yield();
    }
  });
  auto writer_side = async([&] {
    std::string const block(1000, 'w');
    std::error_code ec;
    for (int i = 0; i < 20000; ++i) {
      (void)s.w.write_for(bytes(block), 1ms, ec);
      if (ec && ec != std::errc::timed_out) break;
    }
    s.w.close();
  });
  auto reader_side = async([&] {
    std::string buf(1000, '\0');
    std::error_code ec;
    for (int i = 0; i < 20000; ++i) {
      s.r.read_some_for(bytes(buf), 1ms, ec);
      if (ec && ec != std::errc::timed_out) break;
    }
    s.r.close();
    return ec;
  });
  get_within(writer_side, 60s);
  std::error_code const ec = get_within(reader_side, 60s);
  stop = true;
  scribbler.join();
  // Whatever the lies, every call returned; the reader ends with an error or EOF.
  EXPECT_TRUE(!ec || ec == std::errc::protocol_error || ec == std::errc::timed_out) << ec.message();
  ::munmap(s.words, s.size);
}

// ---- no leaks ------------------------------------------------------------------

TEST(NoLeaks, ThousandHandoversLeaveDescriptorsAsTheyWere) {
  int const before = count_descriptors();
  for (int i = 0; i < 1000; ++i) {
    auto [r, w] = make_pipe({.capacity = 4096, .shared = true});
    reader r2 = adopt_reader(to_descriptor(std::move(r)));
    writer w2 = adopt_writer(to_descriptor(std::move(w)));
    w2.write("cycle");
    w2.close();
    EXPECT_EQ(userpipe_support::read_all(r2), "cycle");
  }
  EXPECT_EQ(count_descriptors(), before);
}

TEST(NoLeaks, ChildCyclesLeaveItsDescriptorsAsTheyWere) {
  child c = spawn({helper, "cycles", "1000"});
  EXPECT_TRUE(c.wait().success());
}

TEST(NoLeaks, HandoversToChildrenLeaveNoDescriptorNorZombie) {
  int const before = count_descriptors();
  for (int i = 0; i < 50; ++i) {
    auto [r, w] = make_pipe({.capacity = 4096, .shared = true});
    child c = start({"close-writer", "3", "0"}, to_descriptor(std::move(w)));
    EXPECT_EQ(userpipe_support::read_all(r), "abc");
    EXPECT_TRUE(c.wait().success());
  }
  EXPECT_EQ(count_descriptors(), before);
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);  // no child left, zombie or not
}

// ---- handover over a Unix socket ---------------------------------------------------

TEST(SendEnd, EndsTravelOverUnixSocket) {
  int s[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
  child c = start({"receive", "3"}, s[1]);
  auto [r, w] = make_pipe({.shared = true});
  auto [answer_r, answer_w] = make_pipe({.shared = true});
  send_end(s[0], std::move(r));
  send_end(s[0], std::move(answer_w));
  EXPECT_FALSE(r.is_open());
  ::close(s[0]);
  w.write(std::string(100000, 'z'));
  w.close();
  EXPECT_EQ(userpipe_support::read_all(answer_r), "100000");
  EXPECT_TRUE(c.wait().success());
}

TEST(SendEnd, FailedSendLeavesTheEndUsable) {
  int s[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
  ::shutdown(s[0], SHUT_WR);
  auto [r, w] = make_pipe({.shared = true});
  std::error_code ec;
  send_end(s[0], std::move(w), ec);
  EXPECT_EQ(ec, std::errc::broken_pipe);
  ASSERT_TRUE(w.is_open());
  w.write("still here");
  w.close();
  EXPECT_EQ(userpipe_support::read_all(r), "still here");
  ::close(s[0]);
  ::close(s[1]);
}

TEST(SendEnd, ReceiveOnClosedSocketIsConnectionReset) {
  int s[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
  ::close(s[1]);
  std::error_code ec;
  reader r = receive_reader(s[0], ec);
  EXPECT_EQ(ec, std::errc::connection_reset);
  ::close(s[0]);
}

// ---- misuse and fork ------------------------------------------------------------

TEST(Handover, HeapPipeEndIsInvalidArgument) {
  auto [r, w] = make_pipe();
  std::error_code ec;
  EXPECT_EQ(to_descriptor(std::move(r), ec), -1);
  EXPECT_EQ(ec, std::errc::invalid_argument);
  EXPECT_TRUE(r.is_open());  // unchanged
}

TEST(Handover, ClosedEndIsBadFileDescriptor) {
  auto [r, w] = make_pipe({.shared = true});
  w.close();
  std::error_code ec;
  EXPECT_EQ(to_descriptor(std::move(w), ec), -1);
  EXPECT_EQ(ec, std::errc::bad_file_descriptor);
  writer empty;
  EXPECT_THROW(to_descriptor(std::move(empty)), std::system_error);
}

TEST(Handover, UnreadBytesGoWithTheReader) {
  auto [r, w] = make_pipe({.shared = true});
  w.write("first line\nsecond");
  std::string_view line;
  ASSERT_TRUE(r.read_line_view(line));
  EXPECT_EQ(line, "first line");
  reader r2 = adopt_reader(to_descriptor(std::move(r)));
  w.close();
  EXPECT_EQ(userpipe_support::read_all(r2), "second");
}

TEST(Fork, ChildsCopiesAreBadFileDescriptorAndLeaveTheStreamAlone) {
  auto [r, w] = make_pipe({.capacity = 4096, .shared = true});
  w.write("before");
  pid_t const pid = ::fork();
  if (pid == 0) {
    std::error_code ec1, ec2;
    char buf[16];
    std::size_t const got = r.read_some(std::as_writable_bytes(std::span(buf)), ec1);
    w.write("from child", ec2);
    bool const ok = got == 0 && ec1 == std::errc::bad_file_descriptor && ec2 == std::errc::bad_file_descriptor;
    ::_exit(ok ? 0 : 1);
  }
  ASSERT_GT(pid, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  w.write(" after");
  w.close();
  EXPECT_EQ(userpipe_support::read_all(r), "before after");
}

TEST(Fork, ForkedCopyDoesNotKeepADeadWriterAlive) {
  // The writer's process forks F (which sleeps, holding copies of
  // everything) and dies without closing: the reader still sees EOF.
  auto [r, w] = make_pipe({.shared = true});
  child d = start({"fork-and-die", "3"}, to_descriptor(std::move(w)));
  std::string pid_line;
  ASSERT_TRUE(r.read_line(pid_line));
  pid_t const f = static_cast<pid_t>(std::stol(pid_line));
  auto got = async([&r] {
    std::error_code ec;
    std::string b(4, '\0');
    return r.read_some(bytes(b), ec);
  });
  EXPECT_EQ(get_within(got, 5s), 0u);
  ::kill(f, SIGKILL);  // reparented: not ours to reap
  d.wait();
}

}  // namespace
