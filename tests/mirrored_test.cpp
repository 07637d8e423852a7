// The promises of options{.mirrored = true}: spans never stop at the ring's
// end, prepare(n) gives n contiguous bytes, and creation fails cleanly.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <thread>
#include <userpipe/pipe.hpp>
#include <vector>

using userpipe::make_pipe;

namespace {

std::string text(std::span<std::byte const> s) { return {reinterpret_cast<char const*>(s.data()), s.size()}; }

std::size_t count_lines(char const* path) {
  std::ifstream in(path);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

std::size_t count_entries(char const* dir) {
  std::size_t n = 0;
  for ([[maybe_unused]] auto const& e : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}

std::size_t page_size() { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }

/// Moves the ring's indices to `offset` bytes before its end.
void move_to_end(userpipe::reader& r, userpipe::writer& w, std::size_t offset) {
  std::string filler(w.capacity() - offset, 'x');
  w.write(filler);
  r.consume(filler.size());
}

}  // namespace

TEST(Mirrored, CapacityIsRoundedUpToWholePages) {
  auto [r, w] = make_pipe({.capacity = 100, .mirrored = true});
  EXPECT_EQ(w.capacity(), page_size());
  auto [r2, w2] = make_pipe({.capacity = 5 * page_size(), .mirrored = true});
  EXPECT_EQ(w2.capacity(), 8 * page_size());
}

TEST(Mirrored, PeekReturnsEverythingReadableAcrossTheWrap) {
  auto [r, w] = make_pipe({.capacity = 4096, .mirrored = true});
  move_to_end(r, w, 10);
  std::string const message = "twenty bytes of text, wrapping";
  w.write(message);
  auto span = r.peek();
  EXPECT_EQ(text(span), message);
  r.consume(span.size());
}

TEST(Mirrored, PrepareGivesAllFreeBytesContiguouslyAcrossTheWrap) {
  auto [r, w] = make_pipe({.capacity = 4096, .mirrored = true});
  move_to_end(r, w, 10);
  auto span = w.prepare(w.capacity());
  ASSERT_EQ(span.size(), w.capacity());
  // Writing the whole span runs over the ring's end; the reader sees it in
  // order as one span too.
  for (std::size_t i = 0; i < span.size(); ++i) span[i] = static_cast<std::byte>(i * 7);
  w.commit(span.size());
  auto got = r.peek();
  ASSERT_EQ(got.size(), w.capacity());
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], static_cast<std::byte>(i * 7)) << i;
}

TEST(Mirrored, PrepareOfNNeverReturnsFewerThanN) {
  auto [r, w] = make_pipe({.capacity = 4096, .mirrored = true});
  for (std::size_t offset = 1; offset < 64; offset += 7) {
    move_to_end(r, w, offset);
    // The ring is empty and `offset` bytes from its end: a heap pipe would
    // give `offset`; a mirrored one gives every free byte in one span.
    EXPECT_EQ(w.prepare(100).size(), w.capacity()) << offset;
  }
}

TEST(Mirrored, HeapPipePrepareStopsAtTheWrap) {
  // The contrast that makes the option worth having.
  auto [r, w] = make_pipe({.capacity = 4096});
  move_to_end(r, w, 10);
  EXPECT_EQ(w.prepare(100).size(), 10u);
}

TEST(Mirrored, BytesSurviveManyWrapsAcrossThreads) {
  auto [r, w] = make_pipe({.capacity = 4096, .mirrored = true});
  std::size_t total = 4 << 20;
  std::thread producer([&w = w, total] {
    std::size_t sent = 0;
    while (sent < total) {
      auto span = w.prepare(std::min<std::size_t>(1000, w.capacity()));
      std::size_t const n = std::min(span.size(), total - sent);
      for (std::size_t i = 0; i < n; ++i) span[i] = static_cast<std::byte>((sent + i) % 251);
      w.commit(n);
      sent += n;
    }
    w.close();
  });
  std::size_t got = 0;
  bool in_order = true;
  for (auto span = r.peek(); !span.empty(); span = r.peek()) {
    for (std::size_t i = 0; i < span.size(); ++i)
      in_order &= span[i] == static_cast<std::byte>((got + i) % 251);
    got += span.size();
    r.consume(span.size());
  }
  producer.join();
  EXPECT_EQ(got, total);
  EXPECT_TRUE(in_order);
}

TEST(Mirrored, CreationFailureIsASystemErrorNotACrash) {
  // No descriptor left for memfd_create: EMFILE, reported, nothing leaked.
#if defined(__SANITIZE_ADDRESS__)
  // The sanitizer runtimes test memory readability through a pipe(2): with
  // no descriptor left, UBSan's vptr check misreports the exception object.
  GTEST_SKIP() << "needs descriptors the sanitizer runtime uses";
#endif
  struct no_descriptors {
    rlimit saved{};
    no_descriptors() {
      ::getrlimit(RLIMIT_NOFILE, &saved);
      rlimit none = saved;
      none.rlim_cur = 0;
      ::setrlimit(RLIMIT_NOFILE, &none);
    }
    // Restored during unwinding, before the handler runs (sanitizer
    // runtimes may need a descriptor to inspect the exception).
    ~no_descriptors() { ::setrlimit(RLIMIT_NOFILE, &saved); }
  };
  std::error_code code;
  try {
    no_descriptors limit;
    make_pipe({.capacity = 4096, .mirrored = true});
  } catch (std::system_error const& e) {
    code = e.code();
  }
  EXPECT_EQ(code, std::errc::too_many_files_open);
  // A heap pipe needs no descriptor, and mirrored creation works again.
  EXPECT_NO_THROW(make_pipe({.capacity = 4096, .mirrored = true}));
}

TEST(Mirrored, ManyMirroredPipesComeAndGo) {
  // Each pipe's mappings and descriptor are released with it: the process
  // has as many descriptors after 2,000 pipes as before, and about as many
  // mappings.
  { auto warm_up = make_pipe({.capacity = 8192, .mirrored = true}); }
  std::size_t const maps = count_lines("/proc/self/maps"), fds = count_entries("/proc/self/fd");
  {
    auto one = make_pipe({.capacity = 8192, .mirrored = true});
    ASSERT_GT(count_lines("/proc/self/maps"), maps) << "the count must see a live pipe's mappings";
  }
  constexpr int pipes = 2000;
  for (int i = 0; i < pipes; ++i) {
    auto [r, w] = make_pipe({.capacity = 8192, .mirrored = true});
    w.write("x");
    ASSERT_EQ(r.available(), 1u);
  }
  // A mapping leaked per pipe adds thousands of lines; the heap may add a
  // few of its own (ASan's quarantine does), so allow far fewer than one per
  // 20 pipes.
  EXPECT_LT(count_lines("/proc/self/maps"), maps + pipes / 20);
  EXPECT_EQ(count_entries("/proc/self/fd"), fds);
}
