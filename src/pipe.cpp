// The parts of the ends that may sleep, close, or run once per pipe. The
// per-call fast paths are inline in include/userpipe/pipe.hpp.
#include "userpipe/pipe.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <new>

namespace userpipe {

namespace detail {
void throw_error(std::error_code ec, char const* what) { throw std::system_error(ec, what); }
}  // namespace detail

namespace {

using detail::pipe_state;
using detail::side_counters;

/// How many free (or readable) bytes a side waits for before it is worth
/// waking: what it needs, but never more than half the ring, so that a big
/// transfer proceeds in half-ring steps (one wake per half ring, not per
/// consume) and a small one is not held back.
std::size_t wake_threshold(std::size_t need, std::size_t capacity) noexcept {
  return std::clamp<std::size_t>(std::min(need, capacity / 2), 1, capacity);
}

pipe_stats snapshot(pipe_state const& s) noexcept {
  auto load = [](std::atomic<std::uint64_t> const& c) { return c.load(std::memory_order_relaxed); };
  pipe_stats out;
  out.bytes_written = s.bytes.head_index().load(std::memory_order_acquire);
  out.bytes_read = s.bytes.tail_index().load(std::memory_order_acquire);
  out.writer_waits = load(s.writer_counters.waits);
  out.reader_waits = load(s.reader_counters.waits);
  out.writer_sleeps = load(s.writer_counters.sleeps);
  out.reader_sleeps = load(s.reader_counters.sleeps);
  out.wakes = load(s.writer_counters.wakes) + load(s.reader_counters.wakes);
  return out;
}

}  // namespace

std::pair<reader, writer> make_pipe(options const& opts) {
  if (opts.capacity == 0 || opts.capacity > max_capacity)
    detail::throw_error(std::make_error_code(std::errc::invalid_argument), "userpipe::make_pipe: capacity");
  std::size_t const capacity = std::bit_ceil(opts.capacity);
  if (opts.shared) {
    pipe_state* state = detail::make_shared_state(capacity, opts.mirrored);
    return {reader(state), writer(state)};
  }
  pipe_state* state = nullptr;
  try {
    // A mirrored mapping's failure is a system_error carrying its errno.
    state = new pipe_state(opts.mirrored ? detail::memory::mirrored(capacity) : detail::memory::heap(capacity));
  } catch (std::bad_alloc const&) {
    detail::throw_error(std::make_error_code(std::errc::not_enough_memory), "userpipe::make_pipe");
  }
  return {reader(state), writer(state)};
}

// ---- writer -----------------------------------------------------------------

writer& writer::operator=(writer&& other) noexcept {
  if (this != &other) {
    reset();
    state_ = std::exchange(other.state_, nullptr);
    closed_ = other.closed_;
  }
  return *this;
}

void writer::reset() noexcept {
  close();
  detail::release(std::exchange(state_, nullptr));
}

void writer::close(std::error_code reason) noexcept {
  if (state_ == nullptr || closed_) return;
  closed_ = true;
  state_->writer_reason = reason;
  if (state_->link != nullptr) state_->words.writer_reason.store(detail::errno_value(reason), std::memory_order_relaxed);
  state_->closed.fetch_or(pipe_state::writer_closed, std::memory_order_seq_cst);
  if (state_->reader_wait.wake()) side_counters::bump(state_->writer_counters.wakes);
  // A callback this end parked would otherwise never run: run it; it finds
  // the end closed. Then wait out one the reader may be running: after
  // close, nothing this end parked runs any more.
  state_->writer_wait.cancel();
  if (state_->link != nullptr) detail::close_socket(*state_, pipe_state::writer_closed);
}

pipe_stats writer::stats() const noexcept { return state_ ? snapshot(*state_) : pipe_stats{}; }

bool writer::wait_for_room(std::size_t want, clock::time_point deadline, std::error_code& ec) noexcept {
  pipe_state& s = *state_;
  auto& ring = s.bytes;
  if (ring.free_space(want) >= want) return check_reader(ec);
  side_counters::bump(s.writer_counters.waits);
  // Room for `want` bytes means tail >= head + want - capacity; the
  // subtraction cannot wrap because we only wait while there is less room.
  std::uint64_t const target = ring.head() + want - ring.capacity();
  auto ready = [&] { return s.writer_may_go(target); };
  bool const ok = s.writer_wait.wait(target, ready, deadline, s.writer_counters.sleeps);
  if (!check_reader(ec)) return false;
  if (!ok) {
    ec = std::make_error_code(std::errc::timed_out);
    return false;
  }
  return true;
}

std::size_t writer::write_blocking(std::span<std::byte const> data, bool all, clock::time_point deadline,
                                   std::error_code& ec) noexcept {
  std::size_t done = 0;
  for (;;) {
    if (!wait_for_room(wake_threshold(data.size() - done, capacity()), deadline, ec)) return done;
    done += push(data.subspan(done), ec);
    if (ec || !all || done == data.size()) return done;
  }
}

bool writer::park(std::size_t want, wake_callback fn, void* ctx) noexcept {
  std::error_code ec;
  if (!check_open(ec) || !check_reader(ec)) return false;
  auto& ring = state_->bytes;
  want = std::clamp<std::size_t>(want, 1, ring.capacity());
  if (ring.free_space(want) >= want) return false;
  side_counters::bump(state_->writer_counters.waits);
  std::uint64_t const target = ring.head() + want - ring.capacity();
  pipe_state& s = *state_;
  return s.writer_wait.park(
      target,
      [&] { return s.writer_may_go(target); },
      fn, ctx);
}

// ---- reader -----------------------------------------------------------------

reader& reader::operator=(reader&& other) noexcept {
  if (this != &other) {
    reset();
    state_ = std::exchange(other.state_, nullptr);
    closed_ = other.closed_;
    line_pending_ = std::exchange(other.line_pending_, 0);
    line_copy_ = std::move(other.line_copy_);
  }
  return *this;
}

void reader::reset() noexcept {
  close();
  detail::release(std::exchange(state_, nullptr));
}

void reader::close(std::error_code reason) noexcept {
  if (state_ == nullptr || closed_) return;
  closed_ = true;
  line_pending_ = 0;  // unread bytes are dropped anyway
  state_->reader_reason = reason;
  if (state_->link != nullptr) state_->words.reader_reason.store(detail::errno_value(reason), std::memory_order_relaxed);
  state_->closed.fetch_or(pipe_state::reader_closed, std::memory_order_seq_cst);
  if (state_->writer_wait.wake()) side_counters::bump(state_->reader_counters.wakes);
  state_->reader_wait.cancel();
  if (state_->link != nullptr) detail::close_socket(*state_, pipe_state::reader_closed);
}

pipe_stats reader::stats() const noexcept { return state_ ? snapshot(*state_) : pipe_stats{}; }

bool reader::wait_for_data(std::size_t want, clock::time_point deadline) noexcept {
  pipe_state& s = *state_;
  auto& ring = s.bytes;
  side_counters::bump(s.reader_counters.waits);
  std::uint64_t const target = ring.tail() + want;
  auto ready = [&] { return s.reader_may_go(target); };
  return s.reader_wait.wait(target, ready, deadline, s.reader_counters.sleeps);
}

std::size_t reader::read_blocking(std::span<std::byte> buffer, std::size_t done, bool all,
                                  clock::time_point deadline, std::error_code& ec) noexcept {
  for (;;) {
    done += pop(buffer.subspan(done));
    if (done == buffer.size() || (done != 0 && !all)) return done;
    std::error_code closed;
    switch (poll(closed)) {
      case status::data:
        continue;
      case status::eof:
        // Bytes already read by this call are returned; the close error is
        // sticky and comes with the next call, so no byte is unaccounted for.
        if (done == 0) ec = closed;
        return done;
      case status::empty:
        break;
    }
    // Wait for one byte, not for what `all` still needs: a writer may be
    // waiting for room at the same time (prepare(n) may ask for the whole
    // ring), and two sides each waiting for more than the other can give
    // would deadlock. One byte never conflicts with any writer threshold.
    if (!wait_for_data(1, deadline)) {
      done += pop(buffer.subspan(done));
      if (done == 0) ec = std::make_error_code(std::errc::timed_out);
      return done;
    }
  }
}

std::size_t reader::read_some_batched_until(std::span<std::byte> buffer, std::size_t min_size,
                                            clock::time_point gather_until, std::error_code& ec) noexcept {
  ec.clear();
  if (!check_open(ec) || buffer.empty()) return 0;
  std::size_t const want =
      std::clamp<std::size_t>(std::min({min_size, buffer.size(), capacity() / 2}), 1, capacity());
  if (state_->bytes.readable_size(want) < want && (state_->closed_bits() & pipe_state::writer_closed) == 0)
    wait_for_data(want, gather_until);  // a timeout here is not an error: read what there is
  return read_some(buffer, ec);
}

bool reader::read_line(std::string& line, char delim, std::error_code& ec) noexcept {
  line.clear();
  try {
    for (;;) {
      auto const span = peek(ec);
      if (ec) return false;
      if (span.empty()) return !line.empty();
      auto const* chars = reinterpret_cast<char const*>(span.data());
      if (auto const* hit = static_cast<char const*>(std::memchr(chars, delim, span.size()))) {
        line.append(chars, hit);
        consume(static_cast<std::size_t>(hit - chars) + 1, ec);
        return true;
      }
      line.append(chars, span.size());
      consume(span.size(), ec);
    }
  } catch (std::bad_alloc const&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    return false;
  }
}

bool reader::read_line(std::string& line, char delim) {
  std::error_code ec;
  bool const got = read_line(line, delim, ec);
  detail::throw_if(ec, "userpipe::reader::read_line");
  return got;
}

bool reader::read_line_view_slow(std::string_view& line, char delim, std::error_code& ec) noexcept {
  // The line is not (yet) whole and contiguous in the ring. Waiting for the
  // rest while holding its first part in the ring could deadlock with a
  // writer waiting for room (prepare(n) may ask for the whole ring), so the
  // part is copied out and freed, like read_line does. First, though, look
  // at the writer's latest head: the fast path saw only the cached one.
  line_copy_.clear();
  if (state_ != nullptr && !closed_) state_->bytes.readable_size(std::numeric_limits<std::size_t>::max());
  try {
    for (;;) {
      auto const span = peek(ec);
      if (ec) {
        line = line_copy_;
        return false;
      }
      if (span.empty()) {
        line = line_copy_;
        return !line_copy_.empty();
      }
      auto const* chars = reinterpret_cast<char const*>(span.data());
      if (auto const* hit = static_cast<char const*>(std::memchr(chars, delim, span.size()))) {
        auto const length = static_cast<std::size_t>(hit - chars);
        if (line_copy_.empty()) {  // the wait brought a whole line: zero-copy after all
          line = {chars, length};
          line_pending_ = length + 1;
          return true;
        }
        line_copy_.append(chars, length);
        consume(length + 1, ec);
        line = line_copy_;
        return true;
      }
      line_copy_.append(chars, span.size());
      consume(span.size(), ec);
    }
  } catch (std::bad_alloc const&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    line = {};
    return false;
  }
}

bool reader::park(std::size_t want, wake_callback fn, void* ctx) noexcept {
  std::error_code ec;
  if (!check_open(ec)) return false;
  auto& ring = state_->bytes;
  want = std::clamp<std::size_t>(want, 1, ring.capacity());
  if (ring.readable_size(want) >= want) return false;
  pipe_state& s = *state_;
  if (s.closed_bits() & pipe_state::writer_closed) return false;
  side_counters::bump(s.reader_counters.waits);
  std::uint64_t const target = ring.tail() + want;
  return s.reader_wait.park(
      target,
      [&] { return s.reader_may_go(target); },
      fn, ctx);
}

}  // namespace userpipe
