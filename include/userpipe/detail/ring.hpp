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
// Publishing stores are seq_cst, not release: the wait protocol
// (wait.hpp) needs a full barrier between "I published" and "does the
// other side sleep?". On x86 the seq_cst store is one xchg and the check is
// a plain load.
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
  ring(memory mem, ring_indices& indices, std::atomic<std::uint32_t>& fault) noexcept
      : head_(indices.head.load(std::memory_order_acquire)),
        cached_tail_(indices.tail.load(std::memory_order_acquire)),
        shared_head_(&indices.head),
        tail_(cached_tail_),
        cached_head_(head_),
        shared_tail_(&indices.tail),
        data_(mem.data()),
        mask_(mem.size() - 1),
        mirrored_(mem.mirrored()),
        fault_(&fault),
        mem_(std::move(mem)) {}
  ring(ring const&) = delete;
  ring& operator=(ring const&) = delete;

  std::size_t capacity() const noexcept { return mask_ + 1; }
  bool mirrored() const noexcept { return mirrored_; }

  /// The most a side copies before it publishes. A 64 KiB copy published at
  /// its end keeps the other side idle for its whole duration; published in
  /// 16 KiB steps, the two copies overlap. Rings of 4 KiB or less are not
  /// split: their transfers are short anyway.
  std::size_t quantum() const noexcept {
    return std::max(std::min(capacity() / 4, std::size_t{16384}), std::min(capacity(), std::size_t{4096}));
  }

  // ---- producer (one thread at a time) ----------------------------------

  std::uint64_t head() const noexcept { return head_; }

  /// Free bytes, rereading the consumer's tail only if the cached value
  /// shows fewer than `want`.
  std::size_t free_space(std::size_t want) noexcept {
    std::size_t free = capacity() - static_cast<std::size_t>(head_ - cached_tail_);
    if (free < want) {
      std::uint64_t const t = shared_tail_->load(std::memory_order_acquire);
      if (t < cached_tail_ || head_ - t > capacity()) [[unlikely]]
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
    shared_head_->store(head_, std::memory_order_seq_cst);
    return head_;
  }

  /// Copies as much of [p, p + n) as fits; returns the count copied.
  std::size_t push(std::byte const* p, std::size_t n) noexcept {
    n = std::min(n, free_space(n));
    if (n == 0) return 0;
    std::size_t const offset = head() & mask_;
    std::size_t const first = mirrored_ ? n : std::min(n, capacity() - offset);
    std::memcpy(data_ + offset, p, first);
    if (first < n) std::memcpy(data_, p + first, n - first);
    return n;
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
    shared_tail_->store(tail_, std::memory_order_seq_cst);
    return tail_;
  }

  /// Copies up to n readable bytes to p; returns the count copied.
  std::size_t pop(std::byte* p, std::size_t n) noexcept {
    n = std::min(n, readable_size(n));
    if (n == 0) return 0;
    std::size_t const offset = tail() & mask_;
    std::size_t const first = mirrored_ ? n : std::min(n, capacity() - offset);
    std::memcpy(p, data_ + offset, first);
    if (first < n) std::memcpy(p + first, data_, n - first);
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
  /// Sets the fault bits and reports no room (or no data): the cached view,
  /// which passed every check, stays as it was.
  std::size_t corrupt() noexcept {
    fault_->fetch_or(fault_bits, std::memory_order_seq_cst);
    return 0;
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
  std::atomic<std::uint32_t>* fault_;
  memory mem_;
};

// Producer line, consumer line, read-only line: no two sides share one.
static_assert(alignof(ring) == cache_line);
static_assert(sizeof(ring) >= 3 * cache_line);

}  // namespace userpipe::detail
