// The data path allocates nothing: make_pipe allocates the control block
// and the ring, and after that write/read_some/prepare/commit/peek/consume/
// read_line (once its string has grown to the line length) and the sleeping
// and waking between threads never call operator new. A global operator new
// that counts proves it.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <userpipe/pipe.hpp>
#include <vector>

#include "support/until.hpp"

namespace {
std::atomic<bool> counting{false};
std::atomic<long> allocations{0};

void* counted(std::size_t size, std::size_t align = 0) {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
  if (size == 0) size = 1;
  void* p = align > alignof(std::max_align_t) ? std::aligned_alloc(align, (size + align - 1) / align * align)
                                              : std::malloc(size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

/// Counts operator new calls (any thread) between construction and count().
class allocation_counter {
 public:
  allocation_counter() {
    allocations = 0;
    counting = true;
  }
  ~allocation_counter() { counting = false; }
  long count() const { return allocations.load(); }
};
}  // namespace

void* operator new(std::size_t size) { return counted(size); }
void* operator new[](std::size_t size) { return counted(size); }
void* operator new(std::size_t size, std::align_val_t align) {
  return counted(size, static_cast<std::size_t>(align));
}
void* operator new[](std::size_t size, std::align_val_t align) {
  return counted(size, static_cast<std::size_t>(align));
}
void* operator new(std::size_t size, std::nothrow_t const&) noexcept {
  try {
    return counted(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, std::nothrow_t const&) noexcept {
  try {
    return counted(size);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace {

std::span<std::byte const> bytes(std::string_view s) {
  return {reinterpret_cast<std::byte const*>(s.data()), s.size()};
}

TEST(NoAllocation, TheCounterSeesAllocations) {
  allocation_counter counter;
  // Through a volatile, or the optimiser may drop the new/delete pair (GCC
  // did at -O1 under TSan).
  int* volatile p = new int(1);
  delete p;
  EXPECT_EQ(counter.count(), 1) << "the test would prove nothing";
}

TEST(NoAllocation, MakePipeIsWhereAllocationHappens) {
  allocation_counter counter;
  auto [r, w] = userpipe::make_pipe({.capacity = 4096});
  EXPECT_GE(counter.count(), 1);
  EXPECT_LE(counter.count(), 2) << "control block and ring";
}

TEST(NoAllocation, SteadyStateCallsAllocateNothing) {
  auto [r, w] = userpipe::make_pipe({.capacity = 4096});
  std::vector<std::byte> buf(1024);
  std::string line;
  // 16 bytes, 8 writes and 8 reads a round: 128 bytes, so no call ever
  // straddles the end of the 4 KiB ring and every span is a whole line.
  std::string_view const text = "a line of text!\n";
  std::error_code ec;
  auto round = [&] {
    w.write(text);
    EXPECT_EQ(w.write_for(bytes(text), std::chrono::seconds(1), ec), text.size());
    w.write(bytes(text), ec);
    w.write_some(text);
    EXPECT_EQ(w.try_write_some(bytes(text), ec), text.size());
    auto span = w.prepare(text.size());
    std::memcpy(span.data(), text.data(), text.size());
    w.commit(text.size());
    span = w.try_prepare(ec);
    std::memcpy(span.data(), text.data(), text.size());
    w.commit(text.size(), ec);

    EXPECT_EQ(r.read_some(std::span(buf).first(text.size())), text.size());
    EXPECT_EQ(r.read(std::span(buf).first(text.size()), ec), text.size());
    EXPECT_EQ(r.try_read_some(std::span(buf).first(text.size()), ec), text.size());
    EXPECT_EQ(r.read_some_for(std::span(buf).first(text.size()), std::chrono::seconds(1), ec), text.size());
    auto data = r.peek();
    EXPECT_GE(data.size(), 1u);
    r.consume(1);
    data = r.try_peek(ec);
    r.consume(text.size() - 1, ec);
    EXPECT_TRUE(r.read_line(line));
    EXPECT_TRUE(r.read_line(line, '\n', ec));
    EXPECT_EQ(r.available(), 0u);
    (void)r.stats();
  };
  round();  // read_line's string grows here, once
  allocation_counter counter;
  for (int i = 0; i < 1000; ++i) round();  // wraps the 4 KiB ring many times
  EXPECT_EQ(counter.count(), 0);
  EXPECT_EQ(line, "a line of text!");
}

TEST(NoAllocation, SleepingAndWakingAllocateNothing) {
  // A small ring and two threads, choreographed so that each side really
  // sleeps on the futex and is woken by the other at least once (a test
  // that merely waits may never leave the spin). Threads are created before
  // counting starts.
  auto [r, w] = userpipe::make_pipe({.capacity = 256});
  std::atomic<bool> ready{false}, go{false};
  constexpr std::size_t total = 1 << 20;
  std::thread writer([&, w = std::move(w)]() mutable {
    std::vector<std::byte> chunk(700, std::byte{1});
    ready = true;
    while (!go.load()) std::this_thread::yield();
    // 1. Not a byte until the reader sleeps on the empty pipe.
    userpipe_support::wait_until_asleep(w, &userpipe::pipe_stats::reader_sleeps);
    for (std::size_t sent = 0; sent < total; sent += chunk.size()) w.write(chunk);
    w.close();
  });
  std::vector<std::byte> buf(300);
  std::size_t got = 0;
  long counted_allocations = 0;
  bool woken_by_reader = false;
  while (!ready.load()) std::this_thread::yield();
  {
    allocation_counter counter;
    go = true;
    // peek, not read: it sleeps until the writer's first bytes wake it, and
    // consumes nothing, so only the writer can have woken anyone yet. (The
    // waker counts its wake after the futex call: wait for the count.)
    EXPECT_FALSE(r.peek().empty());
    userpipe_support::wait_until([&] { return r.stats().wakes >= 1; }, "the writer woke the sleeping reader");
    std::uint64_t const wakes_by_writer = r.stats().wakes;
    // 2. Not a byte consumed until the writer sleeps on the full pipe; the
    // reader is not waiting now, so the next wake can only be the reader's.
    userpipe_support::wait_until_asleep(r, &userpipe::pipe_stats::writer_sleeps);
    got += r.read_some(buf);
    woken_by_reader = r.stats().wakes > wakes_by_writer;
    while (std::size_t n = r.read_some(buf)) got += n;
    counted_allocations = counter.count();
  }
  writer.join();
  EXPECT_EQ(got, (total + 699) / 700 * 700);
  EXPECT_EQ(counted_allocations, 0);
  auto const s = r.stats();
  EXPECT_GE(s.reader_sleeps, 1u);
  EXPECT_GE(s.writer_sleeps, 1u);
  EXPECT_TRUE(woken_by_reader) << "the reader woke the sleeping writer";
}

}  // namespace
