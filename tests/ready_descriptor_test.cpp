// reader::ready_descriptor and writer::ready_descriptor: a descriptor that
// poll, epoll (level and edge) and libuv understand, readable while the end
// is ready.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "userpipe/pipe.hpp"

#ifdef USERPIPE_HAVE_LIBUV
#include <uv.h>
#endif

namespace {

using userpipe::make_pipe;
using userpipe::reader;
using userpipe::writer;

/// A bound on how long a test may hang before it fails; never asserted as
/// a time, only a guard against a lost wake-up hanging the suite.
constexpr int hang_ms = 60'000;

bool readable_now(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

bool descriptor_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

std::byte pattern(std::uint64_t i) { return static_cast<std::byte>((i * 131 + (i >> 9)) & 0xff); }

/// n at the default volume; USERPIPE_STRESS_MIB (128 by default, less under
/// sanitizers) scales it.
std::size_t scaled(std::size_t n) {
  char const* env = std::getenv("USERPIPE_STRESS_MIB");
  std::size_t const mib = env ? std::strtoull(env, nullptr, 10) : 128;
  return std::max<std::size_t>(1, n * mib / 128);
}

/// Writes `total` pattern bytes in random chunks with blocking writes, then
/// closes; stops early if the reader goes away (a failed test).
void write_pattern(writer& w, std::uint64_t total, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> chunk(8192);
  std::uint64_t done = 0;
  while (done < total) {
    std::size_t const n = std::min<std::uint64_t>(total - done, 1 + rng() % chunk.size());
    for (std::size_t i = 0; i < n; ++i) chunk[i] = pattern(done + i);
    std::error_code ec;
    w.write(std::span(chunk).first(n), ec);
    if (ec) return;
    done += n;
  }
  w.close();
}

TEST(ReadyDescriptor, ReaderReadableOnlyWhileDataIsThere) {
  auto [r, w] = make_pipe({.capacity = 4096});
  int const fd = r.ready_descriptor();
  ASSERT_GE(fd, 0);
  EXPECT_EQ(r.ready_descriptor(), fd);  // one per end
  EXPECT_FALSE(readable_now(fd));
  w.write("hello");
  EXPECT_TRUE(readable_now(fd));
  std::byte buf[16];
  EXPECT_EQ(r.try_read_some(buf), 5u);
  std::error_code ec;
  EXPECT_EQ(r.try_read_some(buf, ec), 0u);
  EXPECT_EQ(ec, std::errc::resource_unavailable_try_again);
  EXPECT_FALSE(readable_now(fd));  // the would-block call cleared it
  w.write("x");
  EXPECT_TRUE(readable_now(fd));
}

TEST(ReadyDescriptor, ReaderReadableAtEndOfFile) {
  auto [r, w] = make_pipe();
  int const fd = r.ready_descriptor();
  EXPECT_FALSE(readable_now(fd));
  w.close();
  EXPECT_TRUE(readable_now(fd));
  std::byte buf[4];
  std::error_code ec;
  EXPECT_EQ(r.try_read_some(buf, ec), 0u);
  EXPECT_FALSE(ec);
  EXPECT_TRUE(readable_now(fd));  // EOF stays ready
}

TEST(ReadyDescriptor, ReaderReadableOnWriterError) {
  auto [r, w] = make_pipe();
  int const fd = r.ready_descriptor();
  w.close(std::make_error_code(std::errc::connection_reset));
  EXPECT_TRUE(readable_now(fd));
  std::byte buf[4];
  std::error_code ec;
  r.try_read_some(buf, ec);
  EXPECT_EQ(ec, std::errc::connection_reset);
}

TEST(ReadyDescriptor, ReaderAskedAfterDataOrCloseIsReadableAtOnce) {
  auto [r, w] = make_pipe();
  w.write("a");
  EXPECT_TRUE(readable_now(r.ready_descriptor()));
  auto [r2, w2] = make_pipe();
  w2.close();
  EXPECT_TRUE(readable_now(r2.ready_descriptor()));
}

TEST(ReadyDescriptor, WriterReadableWhileThereIsRoom) {
  auto [r, w] = make_pipe({.capacity = 8192});
  int const fd = w.ready_descriptor();
  EXPECT_TRUE(readable_now(fd));
  std::vector<std::byte> block(8192);
  EXPECT_EQ(w.try_write_some(block), 8192u);
  std::error_code ec;
  EXPECT_EQ(w.try_write_some(block, ec), 0u);
  EXPECT_EQ(ec, std::errc::resource_unavailable_try_again);
  EXPECT_FALSE(readable_now(fd));
  std::vector<std::byte> out(8192);
  EXPECT_EQ(r.read(std::span(out).first(100)), 100u);
  EXPECT_FALSE(readable_now(fd));  // 100 bytes free: less than a page
  EXPECT_EQ(r.read(std::span(out).first(4000)), 4000u);
  EXPECT_TRUE(readable_now(fd));  // a page free
}

TEST(ReadyDescriptor, WriterTryPrepareThatFindsNoRoomRearms) {
  auto [r, w] = make_pipe({.capacity = 4096});
  int const fd = w.ready_descriptor();
  std::error_code ec;
  w.commit(w.try_prepare(ec).size());
  EXPECT_TRUE(w.try_prepare(ec).empty());
  EXPECT_FALSE(readable_now(fd));
  std::byte buf[4096];
  EXPECT_EQ(r.read(buf), 4096u);
  EXPECT_TRUE(readable_now(fd));
}

TEST(ReadyDescriptor, WriterReadableWhenReaderGone) {
  auto [r, w] = make_pipe({.capacity = 4096});
  int const fd = w.ready_descriptor();
  std::vector<std::byte> block(4096);
  w.write(block);
  std::error_code ec;
  w.try_write_some(block, ec);
  EXPECT_FALSE(readable_now(fd));
  r.close();
  EXPECT_TRUE(readable_now(fd));
  w.try_write_some(block, ec);
  EXPECT_EQ(ec, std::errc::broken_pipe);
}

TEST(ReadyDescriptor, ClosedWithTheEnd) {
  auto [r, w] = make_pipe();
  int const rfd = r.ready_descriptor();
  int const wfd = w.ready_descriptor();
  EXPECT_TRUE(descriptor_open(rfd));
  r.close();
  EXPECT_FALSE(descriptor_open(rfd));
  {
    writer moved = std::move(w);
    EXPECT_TRUE(descriptor_open(wfd));
    EXPECT_EQ(moved.ready_descriptor(), wfd);  // the descriptor moves with the end
  }
  EXPECT_FALSE(descriptor_open(wfd));
}

TEST(ReadyDescriptor, ClosedEndHasNone) {
  auto [r, w] = make_pipe();
  r.close();
  std::error_code ec;
  EXPECT_EQ(r.ready_descriptor(ec), -1);
  EXPECT_EQ(ec, std::errc::bad_file_descriptor);
  reader empty;
  EXPECT_THROW(empty.ready_descriptor(), std::system_error);
}

TEST(ReadyDescriptor, BlockingReadTakesTheParkAndTryCallRearms) {
  auto [r, w] = make_pipe();
  int const fd = r.ready_descriptor();
  std::thread t([&w] {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the read may block, or not
    w.write("ab");
  });
  std::byte buf[1];
  EXPECT_EQ(r.read_some(buf), 1u);  // a blocking call on an armed end
  t.join();
  std::error_code ec;
  EXPECT_EQ(r.try_read_some(buf, ec), 1u);
  EXPECT_EQ(r.try_read_some(buf, ec), 0u);
  EXPECT_FALSE(readable_now(fd));
  w.write("c");
  EXPECT_TRUE(readable_now(fd));
}

/// Reads a pipe to EOF through epoll on its descriptor; every byte checked.
/// Level-triggered: one try_read_some per wake-up. Edge-triggered: until
/// the call would block.
std::uint64_t drain_with_epoll(reader& r, bool edge, std::size_t buffer_size) {
  int const ep = ::epoll_create1(EPOLL_CLOEXEC);
  EXPECT_GE(ep, 0);
  epoll_event ev{};
  ev.events = EPOLLIN | (edge ? EPOLLET : 0u);
  EXPECT_EQ(::epoll_ctl(ep, EPOLL_CTL_ADD, r.ready_descriptor(), &ev), 0);
  std::vector<std::byte> buf(buffer_size);
  std::uint64_t got = 0;
  bool eof = false;
  while (!eof) {
    epoll_event out{};
    int const n = ::epoll_wait(ep, &out, 1, hang_ms);
    if (n == -1 && errno == EINTR) continue;
    if (n != 1) {
      ADD_FAILURE() << "no wake-up within the hang guard; got " << got << " available " << r.available()
                    << " readable " << readable_now(r.ready_descriptor()) << " reader waits "
                    << r.stats().reader_waits << " wakes " << r.stats().wakes;
      break;
    }
    do {
      std::error_code ec;
      std::size_t const k = r.try_read_some(buf, ec);
      if (ec == std::errc::resource_unavailable_try_again) break;
      EXPECT_FALSE(ec);
      if (k == 0) {
        eof = true;
        break;
      }
      for (std::size_t i = 0; i < k; ++i)
        if (buf[i] != pattern(got + i)) {
          ADD_FAILURE() << "byte " << got + i << " wrong";
          ::close(ep);
          return got;
        }
      got += k;
    } while (edge);
  }
  ::close(ep);
  return got;
}

TEST(ReadyDescriptor, EpollLevelTriggeredReadsEveryByte) {
  std::uint64_t const total = scaled(64u << 20);
  auto [r, w] = make_pipe({.capacity = 65536});
  std::thread t([&w, total] { write_pattern(w, total, 1); });
  EXPECT_EQ(drain_with_epoll(r, false, 3000), total);
  r.close();  // on failure, frees a blocked writer
  t.join();
}

TEST(ReadyDescriptor, EpollEdgeTriggeredLosesNoWakeUp) {
  std::uint64_t const total = scaled(64u << 20);
  auto [r, w] = make_pipe({.capacity = 4096});  // small: many empty/ready transitions
  std::thread t([&w, total] { write_pattern(w, total, 2); });
  EXPECT_EQ(drain_with_epoll(r, true, 1000), total);
  r.close();
  t.join();
}

TEST(ReadyDescriptor, WriterEdgeTriggeredLosesNoWakeUp) {
  std::uint64_t const total = scaled(32u << 20);
  auto [r, w] = make_pipe({.capacity = 4096});
  std::uint64_t got = 0;
  std::thread t([&r, &got] {
    std::vector<std::byte> buf(777);
    while (std::size_t const k = r.read_some(buf)) {
      for (std::size_t i = 0; i < k; ++i) ASSERT_EQ(buf[i], pattern(got + i));
      got += k;
    }
  });
  int const ep = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ASSERT_EQ(::epoll_ctl(ep, EPOLL_CTL_ADD, w.ready_descriptor(), &ev), 0);
  std::vector<std::byte> chunk(5000);
  std::uint64_t done = 0;
  while (done < total) {
    epoll_event out{};
    int const n = ::epoll_wait(ep, &out, 1, hang_ms);
    if (n == -1 && errno == EINTR) continue;
    ASSERT_EQ(n, 1) << "no wake-up within the hang guard";
    for (;;) {
      std::size_t const want = std::min<std::uint64_t>(total - done, chunk.size());
      if (want == 0) break;
      for (std::size_t i = 0; i < want; ++i) chunk[i] = pattern(done + i);
      std::error_code ec;
      std::size_t const k = w.try_write_some(std::span(chunk).first(want), ec);
      if (ec == std::errc::resource_unavailable_try_again) break;
      ASSERT_FALSE(ec);
      done += k;
    }
  }
  ::close(ep);
  w.close();
  t.join();
  EXPECT_EQ(got, total);
}

TEST(ReadyDescriptor, PollReadsEveryByte) {
  std::uint64_t const total = scaled(16u << 20);
  auto [r, w] = make_pipe({.capacity = 16384});
  std::thread t([&w, total] { write_pattern(w, total, 3); });
  std::vector<std::byte> buf(4096);
  std::uint64_t got = 0;
  for (;;) {
    pollfd p{r.ready_descriptor(), POLLIN, 0};
    int const n = ::poll(&p, 1, hang_ms);
    if (n == -1 && errno == EINTR) continue;
    ASSERT_EQ(n, 1) << "no wake-up within the hang guard";
    std::error_code ec;
    std::size_t const k = r.try_read_some(buf, ec);
    if (ec == std::errc::resource_unavailable_try_again) continue;
    ASSERT_FALSE(ec);
    if (k == 0) break;
    for (std::size_t i = 0; i < k; ++i) ASSERT_EQ(buf[i], pattern(got + i));
    got += k;
  }
  t.join();
  EXPECT_EQ(got, total);
}

TEST(ReadyDescriptor, ThousandPipesInOneEpollSet) {
  constexpr std::size_t pipes = 1000;
  std::size_t const messages = scaled(400'000);
  std::vector<reader> readers;
  std::vector<writer> writers;
  int const ep = ::epoll_create1(EPOLL_CLOEXEC);
  ASSERT_GE(ep, 0);
  for (std::size_t i = 0; i < pipes; ++i) {
    auto [r, w] = make_pipe({.capacity = 4096});
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLET;
    ev.data.u64 = i;
    ASSERT_EQ(::epoll_ctl(ep, EPOLL_CTL_ADD, r.ready_descriptor(), &ev), 0);
    readers.push_back(std::move(r));
    writers.push_back(std::move(w));
  }
  // Each pipe carries 8-byte counters of its own: a message's value is how
  // many the pipe had before, so order and completeness are checked per pipe.
  std::thread t([&] {
    std::mt19937 rng(4);
    std::vector<std::uint64_t> sent(pipes, 0);
    for (std::size_t m = 0; m < messages; ++m) {
      std::size_t const i = rng() % pipes;
      std::uint64_t const v = sent[i]++;
      writers[i].write({reinterpret_cast<std::byte const*>(&v), sizeof v});
    }
    for (auto& w : writers) w.close();
  });
  std::vector<std::uint64_t> received(pipes, 0);
  std::size_t open = pipes, total = 0;
  std::vector<epoll_event> events(64);
  while (open != 0) {
    int const n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), hang_ms);
    if (n == -1 && errno == EINTR) continue;
    ASSERT_GT(n, 0) << "no wake-up within the hang guard";
    for (int e = 0; e < n; ++e) {
      std::size_t const i = events[e].data.u64;
      for (;;) {
        std::uint64_t v;
        std::error_code ec;
        // A counter may arrive in two parts only if written so; each write is
        // one 8-byte push, so it is published whole.
        std::size_t const k = readers[i].try_read_some({reinterpret_cast<std::byte*>(&v), sizeof v}, ec);
        if (ec == std::errc::resource_unavailable_try_again) break;
        ASSERT_FALSE(ec);
        if (k == 0) {
          readers[i].close();  // also closes the descriptor, which leaves the set
          --open;
          break;
        }
        ASSERT_EQ(k, sizeof v);
        ASSERT_EQ(v, received[i]++);
        ++total;
      }
    }
  }
  t.join();
  ::close(ep);
  EXPECT_EQ(total, messages);
}

#ifdef USERPIPE_HAVE_LIBUV
struct uv_reader {
  reader* r = nullptr;
  std::uint64_t got = 0;
  bool eof = false;
  bool failed = false;
  uv_poll_t poll{};
  uv_timer_t guard{};
};

TEST(ReadyDescriptor, LibuvLoopReadsWhileAnotherThreadWrites) {
  std::uint64_t const total = scaled(32u << 20);
  auto [r, w] = make_pipe({.capacity = 16384});
  std::thread t([&w, total] { write_pattern(w, total, 5); });
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  uv_reader state;
  state.r = &r;
  ASSERT_EQ(uv_poll_init(&loop, &state.poll, r.ready_descriptor()), 0);
  state.poll.data = &state;
  state.guard.data = &state;
  ASSERT_EQ(uv_timer_init(&loop, &state.guard), 0);
  auto stop = [](uv_reader& s) {
    uv_poll_stop(&s.poll);
    uv_close(reinterpret_cast<uv_handle_t*>(&s.poll), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&s.guard), nullptr);
  };
  static void (*stop_fn)(uv_reader&) = stop;
  uv_timer_start(
      &state.guard,
      [](uv_timer_t* timer) {
        auto& s = *static_cast<uv_reader*>(timer->data);
        s.failed = true;  // the hang guard: no progress for a long time
        stop_fn(s);
      },
      hang_ms, 0);
  uv_poll_start(&state.poll, UV_READABLE, [](uv_poll_t* handle, int status, int) {
    auto& s = *static_cast<uv_reader*>(handle->data);
    if (status < 0) {
      s.failed = true;
      stop_fn(s);
      return;
    }
    std::byte buf[4096];
    for (;;) {
      std::error_code ec;
      std::size_t const k = s.r->try_read_some(buf, ec);
      if (ec == std::errc::resource_unavailable_try_again) return;
      if (ec || k == 0) {
        s.failed = static_cast<bool>(ec);
        s.eof = true;
        stop_fn(s);
        return;
      }
      for (std::size_t i = 0; i < k; ++i)
        if (buf[i] != pattern(s.got + i)) {
          s.failed = true;
          stop_fn(s);
          return;
        }
      s.got += k;
      uv_timer_again(&s.guard);
    }
  });
  uv_timer_set_repeat(&state.guard, hang_ms);
  uv_run(&loop, UV_RUN_DEFAULT);
  t.join();
  EXPECT_EQ(uv_loop_close(&loop), 0);
  EXPECT_FALSE(state.failed);
  EXPECT_TRUE(state.eof);
  EXPECT_EQ(state.got, total);
}
#endif

}  // namespace

namespace {

// A shared pipe's wake-ups come through its watcher thread; the descriptor
// works the same.
TEST(ReadyDescriptor, SharedPipeReaderDescriptor) {
  std::uint64_t const total = scaled(8u << 20);
  auto [r, w] = make_pipe({.capacity = 16384, .shared = true});
  std::thread t([&w, total] { write_pattern(w, total, 9); });
  EXPECT_EQ(drain_with_epoll(r, true, 4096), total);
  r.close();
  t.join();
}

}  // namespace
