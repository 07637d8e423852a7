// userpipe/detail/ring.hpp — the single-producer single-consumer byte ring
// every front end stands on.
//
// head and tail are monotonic 64-bit byte counts (they never wrap in the
// lifetime of a process: 2^64 bytes at 100 GB/s is 5 years), so full and
// empty need no spare slot: used = head - tail. Each index sits on its own
// cache line beside the owner's cached copy of the *other* index: the owner
// rereads the shared index only when its cache says "no room" or "no data",
// so a streaming pair touches the other's line once per refill instead of
// once per call.
//
// The wait protocol (wait.hpp) needs a store-load order between "I
// published" and "does the other side sleep?". Who pays for it is the
// ring's fence_mode (fence.hpp), fixed at construction: asymmetric (the
// default in a process that has membarrier) publishes with a release store
// and a compiler barrier, a plain mov on x86, and leaves the barrier to a
// side about to sleep; symmetric publishes with a seq_cst store (one xchg
// on x86), for rings whose sides live in different processes.
//
// The shared indices live outside the ring (ring_indices): in the pipe's
// own control block for a pipe in one process, in the memfd for a shared
// one. Each side keeps its own index privately and only publishes it, and
// checks the other side's index whenever it rereads it (never backwards,
// never more than the capacity apart): for a shared pipe those words are
// written by another process, which may lie. A lie sets `fault` bits and
// leaves the cached view as it was, so every copy stays inside the ring.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "userpipe/detail/fence.hpp"
#include "userpipe/detail/memory.hpp"

namespace userpipe::detail {

/// The two published indices, each on its own line.
struct ring_indices {
  alignas(cache_line) std::atomic<std::uint64_t> head{0};
  alignas(cache_line) std::atomic<std::uint64_t> tail{0};
};

class ring {
 public:
  /// Set in `fault` when the other side's index breaks the ring's rules:
  /// both ends read as closed, with protocol_error.
  static constexpr std::uint32_t fault_bits = 1 | 2 | 4;

  /// `mem.size()` must be a power of two; `indices` must satisfy
  /// tail <= head <= tail + size (checked by whoever adopts a shared ring).
  ring(memory mem, ring_indices& indices, std::atomic<std::uint32_t>& fault,
       fence_mode mode = fence_mode::symmetric) noexcept
      : head_(indices.head.load(std::memory_order_acquire)),
        cached_tail_(indices.tail.load(std::memory_order_acquire)),
        shared_head_(&indices.head),
        tail_(cached_tail_),
        cached_head_(head_),
        shared_tail_(&indices.tail),
        data_(mem.data()),
        mask_(mem.size() - 1),
        mirrored_(mem.mirrored()),
        quantum_(quantum_of(capacity())),
        fault_(&fault),
        symmetric_(mode == fence_mode::symmetric),
        mem_(std::move(mem)) {}
  ring(ring const&) = delete;
  ring& operator=(ring const&) = delete;

  std::size_t capacity() const noexcept { return mask_ + 1; }
  bool mirrored() const noexcept { return mirrored_; }
  fence_mode mode() const noexcept { return symmetric_ ? fence_mode::symmetric : fence_mode::asymmetric; }

  /// The most a side copies before it publishes. A 64 KiB copy published at
  /// its end keeps the other side idle for its whole duration; published in
  /// 16 KiB steps, the two copies overlap. Rings of 4 KiB or less are not
  /// split: their transfers are short anyway.
  std::size_t quantum() const noexcept { return quantum_; }
  static std::size_t quantum_of(std::size_t capacity) noexcept {
    return std::max(std::min(capacity / 4, std::size_t{16384}), std::min(capacity, std::size_t{4096}));
  }

  // ---- producer (one thread at a time) ----------------------------------

  std::uint64_t head() const noexcept { return head_; }

  /// Free bytes, rereading the consumer's tail only if the cached value
  /// shows fewer than `want`.
  std::size_t free_space(std::size_t want) noexcept {
    std::size_t free = capacity() - static_cast<std::size_t>(head_ - cached_tail_);
    if (free < want) {
      std::uint64_t const t = shared_tail_->load(std::memory_order_acquire);
      // The invariant itself: a tail never goes back and never passes the
      // head (the capacity bound follows from cached_tail_ >= head_ -
      // capacity). `head_ - t > capacity()` alone would take a tail ahead
      // of the head for one a ring behind, as the shm fuzzer found.
      if (t < cached_tail_ || t > head_) [[unlikely]]
        return corrupt();
      cached_tail_ = t;
      free = capacity() - static_cast<std::size_t>(head_ - t);
    }
    return free;
  }

  /// The free bytes that are contiguous in memory (all of them if mirrored).
  /// Rereads the tail unless the cache already shows the whole stretch free:
  /// a stale cache must not hide room that is there (`want` is kept for
  /// callers; the stretch is at least as large in every case that matters).
  std::span<std::byte> writable(std::size_t want = 1) noexcept {
    std::size_t const offset = head() & mask_;
    std::size_t const contiguous = mirrored_ ? capacity() : capacity() - offset;
    std::size_t const free = free_space(std::max(want, contiguous));
    return {data_ + offset, std::min(free, contiguous)};
  }

  /// Makes n more bytes visible to the consumer; returns the new head.
  /// n must not exceed free_space().
  std::uint64_t publish(std::size_t n) noexcept {
    head_ += n;
    store_index(*shared_head_, head_);
    return head_;
  }

  /// Copies as much of [p, p + n) as fits; returns the count copied.
  std::size_t push(std::byte const* p, std::size_t n) noexcept {
    n = std::min(n, free_space(n));
    if (n != 0) copy_in(p, n);
    return n;
  }

  /// Copies all of [p, p + n) if it fits, else nothing: the small write's
  /// path, which has one outcome to test instead of a count.
  bool push_whole(std::byte const* p, std::size_t n) noexcept {
    if (free_space(n) < n) return false;
    copy_in(p, n);
    return true;
  }

  // ---- consumer (one thread at a time) ----------------------------------

  std::uint64_t tail() const noexcept { return tail_; }

  /// Readable bytes, rereading the producer's head only if the cached
  /// value shows fewer than `want`.
  std::size_t readable_size(std::size_t want) noexcept {
    std::size_t used = static_cast<std::size_t>(cached_head_ - tail_);
    if (used < want) {
      std::uint64_t const h = shared_head_->load(std::memory_order_acquire);
      if (h < cached_head_ || h - tail_ > capacity()) [[unlikely]]
        return corrupt(), used;
      cached_head_ = h;
      used = static_cast<std::size_t>(h - tail_);
    }
    return used;
  }

  /// The readable bytes that are contiguous in memory (all if mirrored).
  /// Rereads the head unless the cache already shows the whole stretch
  /// readable: a stale cache must not hide bytes that were published (a
  /// parser peeking for a whole message would otherwise never see it).
  std::span<std::byte const> readable(std::size_t want = 1) noexcept {
    std::size_t const offset = tail() & mask_;
    std::size_t const contiguous = mirrored_ ? capacity() : capacity() - offset;
    std::size_t const used = readable_size(std::max(want, contiguous));
    return {data_ + offset, std::min(used, contiguous)};
  }

  /// Frees n bytes for the producer; returns the new tail.
  /// n must not exceed readable_size().
  std::uint64_t release(std::size_t n) noexcept {
    tail_ += n;
    store_index(*shared_tail_, tail_);
    return tail_;
  }

  /// Copies up to n readable bytes to p; returns the count copied.
  std::size_t pop(std::byte* p, std::size_t n) noexcept {
    n = std::min(n, readable_size(n));
    if (n == 0) return 0;
    std::size_t const offset = tail() & mask_;
    if (mirrored_ || n <= capacity() - offset) [[likely]] {
      std::memcpy(p, data_ + offset, n);
    } else {
      std::size_t const first = capacity() - offset;
      std::memcpy(p, data_ + offset, first);
      std::memcpy(p + first, data_, n - first);
    }
    return n;
  }

  // ---- either side, for waiting and statistics ---------------------------

  /// The published indices. For a shared ring the peer writes one of them:
  /// use them for waiting and statistics, never to size a copy.
  std::atomic<std::uint64_t> const& head_index() const noexcept { return *shared_head_; }
  std::atomic<std::uint64_t> const& tail_index() const noexcept { return *shared_tail_; }

  /// For a fork()ed child's copy of a shared ring: no room and no data as
  /// far as the caches go, so every call takes the slow path (which finds
  /// the end unusable) and nothing is copied out of or into the ring.
  void disown() noexcept {
    cached_head_ = tail_;
    cached_tail_ = head_ - capacity();
  }

  /// Whether a check of the other side's index has failed.
  bool corrupted() const noexcept { return (fault_->load(std::memory_order_acquire) & 4) != 0; }

 private:
  /// Copies n bytes, which fit, in at the head (unpublished).
  void copy_in(std::byte const* p, std::size_t n) noexcept {
    std::size_t const offset = head_ & mask_;
    if (mirrored_ || n <= capacity() - offset) [[likely]] {
      std::memcpy(data_ + offset, p, n);
    } else {
      std::size_t const first = capacity() - offset;
      std::memcpy(data_ + offset, p, first);
      std::memcpy(data_, p + first, n - first);
    }
  }

  /// Sets the fault bits and reports no room (or no data): the cached view,
  /// which passed every check, stays as it was.
  std::size_t corrupt() noexcept {
    fault_->fetch_or(fault_bits, std::memory_order_seq_cst);
    return 0;
  }

  /// The publishing store, then (the caller's notify) a load of the peer's
  /// wait state: the light half of the Dekker pair in wait.hpp.
  void store_index(std::atomic<std::uint64_t>& index, std::uint64_t value) noexcept {
    if (symmetric_) {
      index.store(value, std::memory_order_seq_cst);
    } else {
      index.store(value, std::memory_order_release);
      light_fence();
    }
  }

  // Producer line: its own index, its view of the tail, where it publishes.
  alignas(cache_line) std::uint64_t head_;
  std::uint64_t cached_tail_;
  std::atomic<std::uint64_t>* shared_head_;

  // Consumer line, the mirror image.
  alignas(cache_line) std::uint64_t tail_;
  std::uint64_t cached_head_;
  std::atomic<std::uint64_t>* shared_tail_;

  // Read by both sides, written by neither after construction.
  alignas(cache_line) std::byte* data_;
  std::size_t mask_;
  bool mirrored_;
  std::size_t quantum_;
  std::atomic<std::uint32_t>* fault_;
  bool symmetric_;
  memory mem_;
};

// Producer line, consumer line, read-only line: no two sides share one.
static_assert(alignof(ring) == cache_line);
static_assert(sizeof(ring) >= 3 * cache_line);

}  // namespace userpipe::detail
