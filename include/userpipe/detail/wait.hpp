// userpipe/detail/wait.hpp — how one side of a pipe sleeps until the other
// side has made progress, and how the other side wakes it without a system
// call unless it really sleeps.
//
// The protocol (model-checked in model/wait.pml; change both together)
// ----------------------------------------------------------------------
// Each side owns a wait_slot that only the *other* side wakes. A slot holds
//   state   32-bit futex word: idle, thread (a thread sleeps or is about to),
//           or callback (an event loop parked fn(ctx));
//   target  the value the other side's index must reach before a wake is
//           worth it (the reader waits for head >= tail + 1, the writer for
//           tail >= head + want - capacity).
//
// Waiter (owner of the slot):              Waker (the other side):
//   W1 target = t            (relaxed)       K1 index = i   (publish, light)
//   W2 state  = thread       (seq_cst)       K2 s = state          (seq_cst)
//   WH heavy barrier (asymmetric mode)       K3 if s != idle && i >= target:
//   W3 if ready() -> withdraw, return           if exchange(state, idle)
//      (ready() reads the waker's index            == thread: futex_wake
//       and the close flags, seq_cst)              == callback: fn(ctx)
//   W4 futex_wait(state, thread)
//   W5 loop to W2 (spurious) or return
//
// Why no wake-up is lost. W2-then-W3 and K1-then-K2 are the Dekker pattern:
// each side stores, then loads what the other stored; it is enough that one
// of the two loads sees the other side's store, and that needs a store-load
// barrier in each pair. The ring's fence_mode (fence.hpp) says who pays:
//  - symmetric: K1 and W2 are seq_cst stores and K2, W3 seq_cst loads. In
//    the single total order either K2 sees W2 (the waker wakes), or K2
//    comes before W2, so K1 comes before W3 and the waiter sees the index.
//  - asymmetric: K1 is a release store followed by a compiler barrier only,
//    so K2 may be satisfied while K1 still sits in the waker's store
//    buffer. WH, membarrier(PRIVATE_EXPEDITED), returns only once every
//    other running thread of the process has executed a full barrier B
//    (a thread not running has passed one when it was switched out), and
//    its own entry orders W2 before it. If the waker's B falls after its
//    K1, K1 is visible before WH returns and W3 sees i. If B falls before
//    K1, K1 and K2 run after WH began, so after W2 was visible: K2 sees W2.
//    The waiter pays one system call per sleep, which already costs two
//    (futex_wait, and the waker's futex_wake); the publish, once per
//    write, costs a plain store.
// futex_wait compares state with `thread` atomically in the kernel, so a
// waker that clears state between W3 and W4 makes W4 return at once. A
// stale target read at K3 belongs to a wait that has ended; the current
// wait's W2 then comes after K2 and W3 sees index i itself.
// close() on either side is a waker whose "index" is the close flag: it sets
// the flag (seq_cst fetch_or, a full barrier in either mode) and then wakes
// unconditionally; the wake's exchange is its K2 and is seq_cst.
//
// Callbacks park through the same slot (W1, W2 = callback, WH, W3) and
// need the same barrier. What keeps it off an event loop's busy path is
// that a park must follow a wait that found the peer behind: the Asio
// streams post an operation's first try instead of parking in the
// initiating call, so two coroutines on one thread hand the ring back and
// forth through the executor and park only when a full trip found no
// progress (then the peer is elsewhere, or idle, and a system call is
// worth its price). The fd pumps park before a poll(2), which costs more.
//
// A side that sleeps may be what the other side waits for: a reader that
// gathers (read_some_batched) waits for more bytes than a writer in
// prepare(n) may leave it, and that writer waits for room. So a waiter may
// name a slot to nudge (`also_wake`): after W3 finds it must sleep, it
// wakes whatever waits in that slot, whose ready() then sees this slot's
// state (it loads it after its own W2 and WH: the same Dekker pair, with
// both sides fenced).
//
// Callbacks in flight. A waker counts itself in `firing` before K2's
// exchange and out after fn(ctx) returns. unpark() and close wait until
// `firing` is zero, so when they return no fn of this slot is running, not
// merely "taken": an event loop being torn down can then free what fn
// touches (its executor, its operation) without racing a peer thread still
// inside fn (the tail of a post to an executor is a futex wake, during which
// what fn posted may already have run and parked again). The owner's park
// and wait never wait for it: only the rare unpark and close do.
//
// Only the owner writes target, fn and ctx, and only while state is idle; a
// waker reads them after winning the exchange, so they are never torn.
// A busy pipe never gets past K2: no system call on the data path.
//
// Across processes (a shared pipe, userpipe/shared.hpp) the slot's state and
// target live in the memfd and the protocol is the same up to W4/K3, with
// three differences. (1) The owner sleeps in poll() on its end's socket
// instead of futex_wait, and a waker rings a doorbell (one byte on its own
// end's socket) instead of futex_wake: the same poll then also reports a
// dead peer (POLLHUP), which sets this side's private `gone` bit, which
// ready() reads. (2) The waker does not exchange the state (it may belong
// to another process, and the owner must know a callback is due): the
// owner resets it itself, and each sleep publishes a new generation in
// the state's upper bits so that the waker rings once per sleep, not once
// per publish. (3) A parked callback is claimed through a private word and
// run by this process's watcher thread (src/shared_wait.cpp) when the bell
// or the hang-up arrives; unpark and close synchronise with it through
// `firing` exactly as above. The peer can write the shared words at will:
// that can cost a bell too many or too few, and a missing bell is bounded by
// the same poll's hang-up, so no lie can make a side sleep past its peer's
// death.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

#include "userpipe/detail/fence.hpp"
#include "userpipe/detail/memory.hpp"

namespace userpipe::detail {

/// Called by the waking side; must not block (typically it posts to an
/// executor). noexcept so a throwing callback cannot unwind through the
/// other side's write or read.
using wake_callback = void (*)(void* context) noexcept;

inline void cpu_relax() noexcept;

/// How long a waiter spins before it sleeps, at most. A spin only pays
/// while the other side runs on another CPU; with both on one CPU every
/// spin is time taken from the side that would make progress, so the
/// budget stays a few microseconds. Not adaptive: an average of past waits
/// locks itself out on request/response traffic, where each wait includes
/// the peer's futex wake-up (docs/fast_path.md, "Spin budget").
/// After the spin a waiter yields its CPU up to yield_rounds times before
/// it sleeps: when threads outnumber CPUs the peer is often runnable on
/// this very CPU, and a yield hands it over for one cheap system call
/// instead of a futex sleep plus a wake. Only a starving side yields, so a
/// busy pipe still makes no call.
inline constexpr std::chrono::nanoseconds spin_budget{3000};
inline constexpr int yield_rounds = 4;

/// A blocking read that drains the ring of fewer than stream_gather_below
/// bytes twice in a row is reading a stream of small writes one or two at
/// a time, and each of them then moves the head's cache line between the
/// CPUs. Its next read first waits stream_gather without looking, so that
/// it takes tens of writes at once (docs/fast_path.md, "Fewer
/// instructions, then gathering a stream of small writes"). A lone write
/// is never delayed: a read that finds nothing ends the streak, and its
/// wait sees the next write at once.
inline constexpr std::chrono::nanoseconds stream_gather{400};
inline constexpr std::size_t stream_gather_below = 4096;

/// The words of a slot that the waker reads: in the pipe's control block,
/// or in the memfd of a shared pipe.
struct wait_words {
  alignas(cache_line) std::atomic<std::uint32_t> state{0};
  std::atomic<std::uint64_t> target{0};
};

/// What a slot of a shared pipe needs besides its words (src/shared_wait.cpp).
struct shared_slot {
  int sleep_fd = -1;                           ///< the owner's end's socket: bells and hang-up arrive here
  int bell_fd = -1;                            ///< the waker's end's socket: bells leave here
  std::atomic<std::uint32_t>* gone = nullptr;  ///< the private verdict: peer closed
  std::uint32_t gone_bit = 0;
  std::uint32_t generation = 0;          ///< owner: sleeps so far, published in state
  std::uint32_t last_rung = 0;           ///< waker: the state it last rang for
  std::atomic<std::uint32_t> parked{0};  ///< owner's callback, claimed once
  std::uint64_t watch_id = 0;            ///< registration with the watcher, 0: none
};

class wait_slot {
 public:
  enum : std::uint32_t { idle = 0, thread = 1, callback = 2 };

  /// `mode` must be the ring's (fence.hpp): asymmetric makes every sleep
  /// and park pay the heavy barrier (WH).
  explicit wait_slot(wait_words& words, fence_mode mode = fence_mode::symmetric) noexcept
      : words_(&words), heavy_(mode == fence_mode::asymmetric) {}
  wait_slot(wait_slot const&) = delete;
  wait_slot& operator=(wait_slot const&) = delete;

  /// Makes this a slot of a shared pipe. Before either end is used.
  void share(shared_slot* shared) noexcept { shared_ = shared; }
  shared_slot* shared() const noexcept { return shared_; }

  // ---- owner side -------------------------------------------------------

  /// Blocks the calling thread until `ready()` holds or `deadline` passes
  /// (time_point::max() waits forever). Spins for up to spin_budget first,
  /// then sleeps on the futex, adding one to `sleeps` (owner-written only)
  /// before each sleep and one to `yields` per sched_yield of the spin,
  /// and waking whatever waits in `also_wake` (if not null) first. Returns
  /// ready() as last seen; never throws.
  template <class Ready>
  bool wait(std::uint64_t target, Ready ready, std::chrono::steady_clock::time_point deadline,
            std::atomic<std::uint64_t>& sleeps, std::atomic<std::uint64_t>& yields,
            wait_slot* also_wake = nullptr) noexcept;

  /// Parks fn(ctx) to be called once by the waker when `target` is reached
  /// (or on close). Returns false, parking nothing, if `ready()` already
  /// holds: the caller then proceeds itself. Once parked, wakes whatever
  /// waits in `also_wake` (if not null), as wait() does.
  template <class Ready>
  bool park(std::uint64_t target, Ready ready, wake_callback fn, void* ctx,
            wait_slot* also_wake = nullptr) noexcept;

  /// Withdraws a parked callback. True: it will never be called. False: a
  /// waker took it. Either way, returns only once no fn of this slot is
  /// running (it waits for a waker inside fn on another thread; fn must not
  /// block, so briefly).
  bool unpark() noexcept {
    if (shared_ != nullptr) [[unlikely]]
      return unpark_shared();
    std::uint32_t expected = callback;
    bool const withdrawn = state_.compare_exchange_strong(expected, idle, std::memory_order_seq_cst);
    quiesce();
    return withdrawn;
  }

  /// Waits until no waker is inside fn (see "Callbacks in flight").
  void quiesce() noexcept {
    for (int spins = 0; firing_.load(std::memory_order_seq_cst) != 0; ++spins) pause_or_yield(spins);
  }

  // ---- waker side -------------------------------------------------------

  /// Fast path for the waker after publishing `index` with a seq_cst store.
  /// Costs one load of a line that is almost never written. Returns true if
  /// it woke somebody.
  bool notify(std::uint64_t index) noexcept {
    std::uint32_t const s = state_.load(std::memory_order_seq_cst);
    if (s == idle) [[likely]]
      return false;
    if (index < target_.load(std::memory_order_relaxed)) return false;
    if (shared_ != nullptr) return ring_bell(s);
    return wake();
  }

  /// Wakes whatever waits, whatever its target (used by the other end's
  /// close). For a shared slot: rings the bell unconditionally.
  bool wake() noexcept;

  /// The owner's close: runs a callback the owner parked (it finds the end
  /// closed), stops watching, and waits out any fn still running.
  void cancel() noexcept;

  /// Whether the owner waits (or is about to): a seq_cst load of state,
  /// for a ready() that must end when this side waits (see also_wake).
  bool waiting() const noexcept { return state_.load(std::memory_order_seq_cst) != idle; }

 private:
  static void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t value,
                         std::chrono::steady_clock::time_point deadline) noexcept;
  static void futex_wake(std::atomic<std::uint32_t>& word) noexcept;
  /// A waker inside fn is usually a few instructions from done; but it may
  /// have just woken us with a futex and been preempted by us on its own
  /// CPU, and then only yielding lets it finish.
  static void pause_or_yield(int spins) noexcept;
  static void yield_cpu() noexcept;
  /// Busy-waits (pause) until ready() or `budget` has passed since `start`,
  /// then yields the CPU up to yield_rounds times; true once ready().
  template <class Ready>
  static bool spin(Ready& ready, std::chrono::steady_clock::time_point start, std::chrono::nanoseconds budget,
                   std::atomic<std::uint64_t>& yields) noexcept;
  // Shared slots (src/shared_wait.cpp).
  bool ring_bell(std::uint32_t state) noexcept;
  bool unpark_shared() noexcept;
  /// Sleeps in poll() on the owner's socket until a bell, a hang-up or the
  /// deadline; drains the bells; a hang-up sets the gone bit.
  void sleep_on_socket(std::chrono::steady_clock::time_point deadline) noexcept;
  /// Hands the parked callback to the watcher thread; false if it cannot.
  bool watch() noexcept;
  std::uint32_t next_state(std::uint32_t kind) noexcept { return (++shared_->generation << 2) | kind; }

 public:
  /// Claims and runs the parked callback of a shared slot (the watcher
  /// thread, or the owner's close). The caller has already counted itself
  /// in with begin_fire() (the watcher does so under its registry lock, so
  /// that a close that unregisters the slot and then quiesces waits for it);
  /// this counts it out.
  void begin_fire() noexcept { firing_.fetch_add(1, std::memory_order_seq_cst); }
  void fire_shared() noexcept;

 private:
  alignas(cache_line) wait_words* words_;
  std::atomic<std::uint32_t>& state_ = words_->state;
  std::atomic<std::uint64_t>& target_ = words_->target;
  wake_callback fn_ = nullptr;
  void* ctx_ = nullptr;
  std::atomic<std::uint32_t> firing_{0};  // wakers between K2 and the end of fn
  shared_slot* shared_ = nullptr;
  bool const heavy_;  // asymmetric mode: WH before W3
};

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

/// Busy-waits for about `d` without touching shared memory.
inline void pause_for(std::chrono::nanoseconds d) noexcept {
  auto const until = std::chrono::steady_clock::now() + d;
  do cpu_relax();
  while (std::chrono::steady_clock::now() < until);
}

template <class Ready>
bool wait_slot::spin(Ready& ready, std::chrono::steady_clock::time_point start,
                     std::chrono::nanoseconds budget, std::atomic<std::uint64_t>& yields) noexcept {
  for (;;) {
    for (int i = 0; i < 32; ++i) {
      if (ready()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() - start > budget) break;
  }
  // The peer may be runnable on this very CPU (more threads than CPUs):
  // give it the CPU a few times before paying for a futex sleep and wake.
  // With nothing else to run, sched_yield returns at once.
  for (int i = 0; i < yield_rounds; ++i) {
    yields.store(yields.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    yield_cpu();
    if (ready()) return true;
  }
  return false;
}

template <class Ready>
bool wait_slot::wait(std::uint64_t target, Ready ready, std::chrono::steady_clock::time_point deadline,
                     std::atomic<std::uint64_t>& sleeps, std::atomic<std::uint64_t>& yields,
                     wait_slot* also_wake) noexcept {
  auto const start = std::chrono::steady_clock::now();
  if (spin(ready, start, spin_budget, yields)) return true;
  for (;;) {
    target_.store(target, std::memory_order_relaxed);    // W1
    state_.store(shared_ ? next_state(thread) : thread,  // W2
                 std::memory_order_seq_cst);
    if (heavy_) heavy_fence();  // WH
    if (ready()) {              // W3
      state_.store(idle, std::memory_order_relaxed);
      return true;
    }
    if (also_wake != nullptr && also_wake->waiting()) also_wake->wake();
    if (std::chrono::steady_clock::now() >= deadline) {
      state_.store(idle, std::memory_order_relaxed);
      return ready();
    }
    sleeps.store(sleeps.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (shared_ != nullptr) {
      sleep_on_socket(deadline);  // W4
      state_.store(idle, std::memory_order_relaxed);
      continue;
    }
    futex_wait(state_, thread, deadline);  // W4
    // Woken, timed out, interrupted or spurious: the loop re-checks.
  }
}

template <class Ready>
bool wait_slot::park(std::uint64_t target, Ready ready, wake_callback fn, void* ctx,
                     wait_slot* also_wake) noexcept {
  fn_ = fn;
  ctx_ = ctx;
  target_.store(target, std::memory_order_relaxed);
  if (shared_ != nullptr) {
    shared_->parked.store(1, std::memory_order_seq_cst);
    state_.store(next_state(callback), std::memory_order_seq_cst);
    if (!ready() && watch()) return true;
    return !unpark();
  }
  state_.store(callback, std::memory_order_seq_cst);
  if (heavy_) heavy_fence();
  if (!ready()) {
    if (also_wake != nullptr && also_wake->waiting()) also_wake->wake();
    return true;
  }
  // Already ready: take the callback back unless a waker beat us to it, in
  // which case it runs fn and the caller must treat the park as done.
  return !unpark();
}

}  // namespace userpipe::detail
