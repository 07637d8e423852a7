// Several writers for one pipe: see userpipe/multi_writer.hpp.
#include "userpipe/multi_writer.hpp"

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <mutex>
#include <new>

namespace userpipe {

namespace detail {

namespace {

/// The writers' lock: a futex mutex (0 free, 1 held, 2 held with sleepers)
/// that spins a little and yields a few times before it sleeps. Held for a
/// copy and a publish, a lock is usually free again within a spin; a
/// std::mutex would put a contender to sleep at once and pay a futex wake
/// per hand-over. A holder blocked in a write (pipe full) is waited for
/// asleep, not by spinning.
class writer_lock {
 public:
  bool try_lock() noexcept {
    std::uint32_t expected = 0;
    return word_.compare_exchange_strong(expected, 1, std::memory_order_acquire, std::memory_order_relaxed);
  }

  /// try_lock with a short spin: for the try_ calls, which must not wait
  /// for a holder that may be blocked.
  bool try_lock_briefly() noexcept {
    for (int i = 0; i < spins; ++i) {
      if (word_.load(std::memory_order_relaxed) == 0 && try_lock()) return true;
      cpu_relax();
    }
    return false;
  }

  bool lock_until(std::chrono::steady_clock::time_point deadline) noexcept {
    if (try_lock_briefly()) return true;
    for (int i = 0; i < yields; ++i) {
      sched_yield();
      if (word_.load(std::memory_order_relaxed) == 0 && try_lock()) return true;
    }
    while (word_.exchange(2, std::memory_order_acquire) != 0) {
      if (std::chrono::steady_clock::now() >= deadline) return false;  // 2 left behind: one spare wake
      sleep(deadline);
    }
    return true;
  }

  void lock() noexcept { lock_until(std::chrono::steady_clock::time_point::max()); }

  void unlock() noexcept {
    if (word_.exchange(0, std::memory_order_release) == 2)
      syscall(SYS_futex, word(), FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, nullptr, nullptr, 0);
  }

 private:
  static constexpr int spins = 16;
  static constexpr int yields = 4;

  std::uint32_t* word() noexcept { return reinterpret_cast<std::uint32_t*>(&word_); }
  void sleep(std::chrono::steady_clock::time_point deadline) noexcept {
    if (deadline == std::chrono::steady_clock::time_point::max()) {
      syscall(SYS_futex, word(), FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 2, nullptr, nullptr, 0);
      return;
    }
    auto const since_epoch = deadline.time_since_epoch();
    auto const seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(seconds.count());
    ts.tv_nsec = static_cast<long>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - seconds).count());
    syscall(SYS_futex, word(), FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, 2, &ts, nullptr,
            FUTEX_BITSET_MATCH_ANY);
  }

  std::atomic<std::uint32_t> word_{0};
};

}  // namespace

struct writer_group {
  explicit writer_group(writer&& w) noexcept : end(std::move(w)) {}

  writer_lock lock;
  writer end;                   // the pipe's one writer; used under `lock` only
  std::atomic<int> open{1};     // writers not closed; the last one closes `end`
  std::atomic<int> objects{1};  // multi_writer objects that point here
  std::mutex reason_lock;       // for `reason`: closes are rare
  std::error_code reason;       // the first close reason given
};

}  // namespace detail

namespace {

std::error_code code(std::errc e) noexcept { return std::make_error_code(e); }

/// Runs f() with the pipe held; unlocks on every path.
template <class F>
auto with_lock(detail::writer_group& g, F f) {
  g.lock.lock();
  struct unlock {
    detail::writer_lock& l;
    ~unlock() { l.unlock(); }
  } guard{g.lock};
  return f(g.end);
}

}  // namespace

multi_writer::multi_writer(writer&& w) {
  if (!w.is_open()) detail::throw_error(code(std::errc::bad_file_descriptor), "userpipe::multi_writer");
  group_ = new (std::nothrow) detail::writer_group(std::move(w));
  if (group_ == nullptr) {
    detail::throw_error(code(std::errc::not_enough_memory), "userpipe::multi_writer");
  }
}

multi_writer::multi_writer(multi_writer&& other) noexcept
    : group_(std::exchange(other.group_, nullptr)),
      closed_(other.closed_),
      holding_(std::exchange(other.holding_, false)) {}

multi_writer& multi_writer::operator=(multi_writer&& other) noexcept {
  if (this != &other) {
    reset();
    group_ = std::exchange(other.group_, nullptr);
    closed_ = other.closed_;
    holding_ = std::exchange(other.holding_, false);
  }
  return *this;
}

multi_writer::~multi_writer() { reset(); }

void multi_writer::reset() noexcept {
  close();
  if (group_ != nullptr && group_->objects.fetch_sub(1, std::memory_order_acq_rel) == 1) delete group_;
  group_ = nullptr;
}

bool multi_writer::check_open(std::error_code& ec) const noexcept {
  ec.clear();
  if (group_ == nullptr || closed_) {
    ec = code(std::errc::bad_file_descriptor);
    return false;
  }
  return true;
}

multi_writer multi_writer::clone(std::error_code& ec) const noexcept {
  if (!check_open(ec)) return {};
  // This writer is open, so `open` is at least 1 and cannot reach 0 meanwhile.
  group_->objects.fetch_add(1, std::memory_order_relaxed);
  group_->open.fetch_add(1, std::memory_order_relaxed);
  return multi_writer(group_);
}

multi_writer multi_writer::clone() const {
  std::error_code ec;
  auto w = clone(ec);
  detail::throw_if(ec, "userpipe::multi_writer::clone");
  return w;
}

void multi_writer::close(std::error_code reason) noexcept {
  if (group_ == nullptr || closed_) return;
  closed_ = true;
  if (std::exchange(holding_, false)) group_->lock.unlock();
  if (reason) {
    std::lock_guard guard(group_->reason_lock);
    if (!group_->reason) group_->reason = reason;
  }
  // The last one closes the pipe's writer. No other writer can be inside a
  // call then (each has closed), and acq_rel orders their last writes and
  // their reasons before this.
  if (group_->open.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    std::error_code why;
    {
      std::lock_guard guard(group_->reason_lock);
      why = group_->reason;
    }
    group_->end.close(why);
  }
}

// ---- writes -------------------------------------------------------------------

std::size_t multi_writer::write(std::span<std::byte const> data, std::error_code& ec) noexcept {
  if (!check_open(ec)) return 0;
  return with_lock(*group_, [&](writer& w) { return w.write(data, ec); });
}

void multi_writer::write(std::span<std::byte const> data) {
  std::error_code ec;
  write(data, ec);
  detail::throw_if(ec, "userpipe::multi_writer::write");
}

std::size_t multi_writer::write_some(std::span<std::byte const> data, std::error_code& ec) noexcept {
  if (!check_open(ec)) return 0;
  // Under the lock a write() of a small piece is all of it, published in as
  // many steps as room comes, with no other writer in between.
  if (data.size() <= atomic_write_max)
    return with_lock(*group_, [&](writer& w) { return w.write(data, ec); });
  return with_lock(*group_, [&](writer& w) { return w.write_some(data, ec); });
}

std::size_t multi_writer::write_some(std::span<std::byte const> data) {
  std::error_code ec;
  std::size_t const n = write_some(data, ec);
  detail::throw_if(ec, "userpipe::multi_writer::write_some");
  return n;
}

std::size_t multi_writer::try_write_some(std::span<std::byte const> data, std::error_code& ec) noexcept {
  if (!check_open(ec)) return 0;
  if (data.empty()) return 0;
  if (!group_->lock.try_lock_briefly()) {
    ec = code(std::errc::resource_unavailable_try_again);
    return 0;
  }
  writer& w = group_->end;
  std::size_t n = 0;
  std::size_t const whole = std::min(data.size(), w.capacity());
  if (data.size() <= atomic_write_max && w.is_open() && !w.reader_closed() &&
      w.state_->bytes.free_space(whole) < whole) {
    ec = code(std::errc::resource_unavailable_try_again);  // all or nothing
  } else {
    n = w.try_write_some(data, ec);
  }
  group_->lock.unlock();
  return n;
}

std::size_t multi_writer::try_write_some(std::span<std::byte const> data) {
  std::error_code ec;
  std::size_t const n = try_write_some(data, ec);
  detail::throw_if(ec, "userpipe::multi_writer::try_write_some");
  return n;
}

std::size_t multi_writer::write_until(std::span<std::byte const> data, clock::time_point deadline,
                                      std::error_code& ec) noexcept {
  if (!check_open(ec)) return 0;
  if (!group_->lock.lock_until(deadline)) {
    ec = code(std::errc::timed_out);
    return 0;
  }
  writer& w = group_->end;
  std::size_t n = 0;
  if (data.size() <= atomic_write_max && data.size() <= w.capacity()) {
    // All or nothing, like write_some: a part written before the deadline
    // would let the next writer's bytes into the middle of a small write.
    if (w.wait_for_room(data.size(), deadline, ec)) n = w.try_write_some(data, ec);
  } else {
    n = w.write_until(data, deadline, ec);
  }
  group_->lock.unlock();
  return n;
}

std::size_t multi_writer::write_until(std::span<std::byte const> data, clock::time_point deadline) {
  std::error_code ec;
  std::size_t const n = write_until(data, deadline, ec);
  detail::throw_if(ec, "userpipe::multi_writer::write_until");
  return n;
}

// ---- prepare / commit ---------------------------------------------------------

std::span<std::byte> multi_writer::prepare(std::size_t min_size, std::error_code& ec) noexcept {
  if (!check_open(ec)) return {};
  if (!holding_) group_->lock.lock();
  holding_ = true;
  auto span = group_->end.prepare(min_size, ec);
  if (ec) {
    holding_ = false;
    group_->lock.unlock();
  }
  return span;
}

std::span<std::byte> multi_writer::prepare(std::size_t min_size) {
  std::error_code ec;
  auto span = prepare(min_size, ec);
  detail::throw_if(ec, "userpipe::multi_writer::prepare");
  return span;
}

std::span<std::byte> multi_writer::try_prepare(std::error_code& ec) noexcept {
  if (!check_open(ec)) return {};
  if (!holding_ && !group_->lock.try_lock_briefly()) return {};
  holding_ = true;
  auto span = group_->end.try_prepare(ec);
  if (ec || span.empty()) {
    holding_ = false;
    group_->lock.unlock();
  }
  return span;
}

void multi_writer::commit(std::size_t n, std::error_code& ec) noexcept {
  if (!check_open(ec)) return;
  if (!holding_) group_->lock.lock();
  holding_ = false;
  group_->end.commit(n, ec);
  group_->lock.unlock();
}

void multi_writer::commit(std::size_t n) {
  std::error_code ec;
  commit(n, ec);
  detail::throw_if(ec, "userpipe::multi_writer::commit");
}

// ---- messages -------------------------------------------------------------------

void multi_writer::write_message(std::span<std::byte const> message, std::error_code& ec) noexcept {
  if (!check_open(ec)) return;
  with_lock(*group_, [&](writer& w) { w.write_message(message, ec); });
}

void multi_writer::write_message(std::span<std::byte const> message) {
  std::error_code ec;
  write_message(message, ec);
  detail::throw_if(ec, "userpipe::multi_writer::write_message");
}

void multi_writer::try_write_message(std::span<std::byte const> message, std::error_code& ec) noexcept {
  if (!check_open(ec)) return;
  if (!group_->lock.try_lock_briefly()) {
    ec = code(std::errc::resource_unavailable_try_again);
    return;
  }
  group_->end.try_write_message(message, ec);
  group_->lock.unlock();
}

void multi_writer::write_message_until(std::span<std::byte const> message, clock::time_point deadline,
                                       std::error_code& ec) noexcept {
  if (!check_open(ec)) return;
  if (!group_->lock.lock_until(deadline)) {
    ec = code(std::errc::timed_out);
    return;
  }
  group_->end.write_message_until(message, deadline, ec);
  group_->lock.unlock();
}

// ---- queries --------------------------------------------------------------------

// The group's writer's state pointer never changes while a multi_writer
// points at the group, and these read only atomics behind it.
bool multi_writer::reader_closed() const noexcept { return group_ != nullptr && group_->end.reader_closed(); }
std::size_t multi_writer::capacity() const noexcept { return group_ != nullptr ? group_->end.capacity() : 0; }
std::size_t multi_writer::max_message_size() const noexcept {
  return group_ != nullptr ? group_->end.max_message_size() : 0;
}
pipe_stats multi_writer::stats() const noexcept {
  return group_ != nullptr ? group_->end.stats() : pipe_stats{};
}

}  // namespace userpipe
