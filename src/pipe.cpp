// The parts of the ends that may sleep, close, or run once per pipe. The
// per-call fast paths are inline in include/userpipe/pipe.hpp.
#include "userpipe/pipe.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <new>

#include "ready_event.hpp"

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
  out.writer_yields = load(s.writer_counters.yields);
  out.reader_yields = load(s.reader_counters.yields);
  out.wakes = load(s.writer_counters.wakes) + load(s.reader_counters.wakes);
  return out;
}

/// One end's close, the same for both (`closing` is writer_closed or
/// reader_closed): publish the reason, then the flag, then wake the peer
/// (close is a waker whose index is the flag; see wait.hpp). A callback this
/// end parked would otherwise never run: run it; it finds the end closed.
/// Then wait out one the peer may be running: after close, nothing this end
/// parked runs any more.
void close_side(pipe_state& s, std::uint32_t closing, std::error_code reason) noexcept {
  bool const is_writer = closing == pipe_state::writer_closed;
  detail::wait_slot& own = is_writer ? s.writer_wait : s.reader_wait;
  detail::wait_slot& peer = is_writer ? s.reader_wait : s.writer_wait;
  (is_writer ? s.writer_reason : s.reader_reason) = reason;
  if (s.link != nullptr)
    (is_writer ? s.words.writer_reason : s.words.reader_reason)
        .store(detail::errno_value(reason), std::memory_order_relaxed);
  s.closed.fetch_or(closing, std::memory_order_seq_cst);
  if (peer.wake()) side_counters::bump((is_writer ? s.writer_counters : s.reader_counters).wakes);
  // A callback this end parked would otherwise never run: run it; it finds
  // the end closed. Then wait out one the peer may be running: after close,
  // nothing this end parked runs any more.
  own.cancel();
  if (s.link != nullptr) detail::close_socket(s, closing);
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
    state =
        new pipe_state(opts.mirrored ? detail::memory::mirrored(capacity) : detail::memory::heap(capacity));
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
    ready_ = std::exchange(other.ready_, nullptr);
  }
  return *this;
}

void writer::reset() noexcept {
  close();
  detail::drop_reference(std::exchange(state_, nullptr));
}

void writer::close(std::error_code reason) noexcept {
  if (state_ == nullptr || closed_) return;
  closed_ = true;
  close_side(*state_, pipe_state::writer_closed, reason);
  delete std::exchange(ready_, nullptr);  // close_side waited out its callbacks
}

pipe_stats writer::stats() const noexcept { return state_ ? snapshot(*state_) : pipe_stats{}; }

bool writer::wait_for_room(std::size_t want, clock::time_point deadline, std::error_code& ec) noexcept {
  pipe_state& s = *state_;
  auto& ring = s.bytes;
  if (ring.free_space(want) >= want) return check_reader(ec);
  if (ready_ != nullptr) withdraw_ready();  // the wait needs the slot
  side_counters::bump(s.writer_counters.waits);
  // Room for `want` bytes means tail >= head + want - capacity; the
  // subtraction cannot wrap because we only wait while there is less room.
  std::uint64_t const target = ring.head() + want - ring.capacity();
  auto ready = [&] { return s.writer_may_go(target); };
  // A reader gathering toward more bytes than we leave it (read_some_batched
  // against prepare(n > capacity / 2)) ends its gather when it sees us wait;
  // wake it in case it slept before we said so (wait.hpp, also_wake).
  bool const ok = s.writer_wait.wait(target, ready, deadline, s.writer_counters.sleeps,
                                     s.writer_counters.yields, &s.reader_wait);
  if (!check_reader(ec)) return false;
  // ok with no room is a shared pipe's peer whose tail says "go" when read
  // raw and "no room" when checked (it keeps changing it): honour the
  // deadline, or such a peer could keep write_for from ever returning.
  if (!ok ||
      (deadline != clock::time_point::max() && ring.free_space(want) < want && clock::now() >= deadline)) {
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
  if (ready_ != nullptr) withdraw_ready();
  return park_end(want, fn, ctx);
}

bool writer::park_end(std::size_t want, wake_callback fn, void* ctx) noexcept {
  std::error_code ec;
  if (!check_open(ec) || !check_reader(ec)) return false;
  auto& ring = state_->bytes;
  want = std::clamp<std::size_t>(want, 1, ring.capacity());
  if (ring.free_space(want) >= want) return false;
  side_counters::bump(state_->writer_counters.waits);
  std::uint64_t const target = ring.head() + want - ring.capacity();
  pipe_state& s = *state_;
  return s.writer_wait.park(
      target, [&] { return s.writer_may_go(target); }, fn, ctx, &s.reader_wait);
}

// ---- reader -----------------------------------------------------------------

reader& reader::operator=(reader&& other) noexcept {
  if (this != &other) {
    reset();
    state_ = std::exchange(other.state_, nullptr);
    closed_ = other.closed_;
    small_reads_ = std::exchange(other.small_reads_, 0);
    line_pending_ = std::exchange(other.line_pending_, 0);
    line_copy_ = std::move(other.line_copy_);
    ready_ = std::exchange(other.ready_, nullptr);
  }
  return *this;
}

void reader::reset() noexcept {
  close();
  detail::drop_reference(std::exchange(state_, nullptr));
}

void reader::close(std::error_code reason) noexcept {
  if (state_ == nullptr || closed_) return;
  closed_ = true;
  line_pending_ = 0;  // unread bytes are dropped anyway
  close_side(*state_, pipe_state::reader_closed, reason);
  delete std::exchange(ready_, nullptr);  // close_side waited out its callbacks
}

pipe_stats reader::stats() const noexcept { return state_ ? snapshot(*state_) : pipe_stats{}; }

bool reader::wait_for_data(std::size_t want, clock::time_point deadline) noexcept {
  pipe_state& s = *state_;
  auto& ring = s.bytes;
  if (ready_ != nullptr) withdraw_ready();  // the wait needs the slot
  side_counters::bump(s.reader_counters.waits);
  std::uint64_t const target = ring.tail() + want;
  auto ready = [&] { return s.reader_may_go(target); };
  return s.reader_wait.wait(target, ready, deadline, s.reader_counters.sleeps, s.reader_counters.yields);
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
    // The second test is for a shared pipe's lying peer, as in wait_for_room.
    if (!wait_for_data(1, deadline) || (deadline != clock::time_point::max() &&
                                        state_->bytes.readable_size(1) == 0 && clock::now() >= deadline)) {
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
  pipe_state& s = *state_;
  if (s.bytes.readable_size(want) < want && (s.closed_bits() & pipe_state::writer_closed) == 0) {
    // Gather until `want` bytes, the deadline, a close, or the writer waits
    // for room: then it cannot add more until we take what is there (it may
    // want more than half the ring). A timeout is not an error: read what
    // there is.
    side_counters::bump(s.reader_counters.waits);
    std::uint64_t const target = s.bytes.tail() + want;
    auto ready = [&] { return s.reader_may_go(target) || s.writer_wait.waiting(); };
    s.reader_wait.wait(target, ready, gather_until, s.reader_counters.sleeps, s.reader_counters.yields);
  }
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
  if (ready_ != nullptr) withdraw_ready();
  return park_end(want, fn, ctx);
}

bool reader::park_end(std::size_t want, wake_callback fn, void* ctx) noexcept {
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
      target, [&] { return s.reader_may_go(target); }, fn, ctx);
}

// ---- ready descriptors -------------------------------------------------------

namespace {

/// The room a writer's descriptor waits for by default: a page, like the
/// kernel pipe's POLLOUT, so a level-triggered loop is not woken per byte.
std::size_t writer_ready_room(std::size_t capacity) noexcept { return std::min<std::size_t>(4096, capacity); }

/// Makes an end's ready source if it has none yet. True: it made it, and
/// the caller arms it. False with ec clear: there was one already.
template <class End>
bool make_ready_source(End const& end, detail::ready_source*& ready, std::error_code& ec) noexcept {
  ec.clear();
  if (!end.is_open()) {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return false;
  }
  if (ready != nullptr) return false;
  auto event = detail::ready_event::make(ec);
  if (ec) return false;
  ready = new (std::nothrow) detail::ready_source(std::move(event));
  if (ready == nullptr) ec = std::make_error_code(std::errc::not_enough_memory);
  return ready != nullptr;
}

}  // namespace

int writer::ready_descriptor(std::error_code& ec) noexcept {
  if (make_ready_source(*this, ready_, ec)) refresh_ready(0);
  return ec ? -1 : ready_->fd();
}

int writer::ready_descriptor() {
  std::error_code ec;
  int const fd = ready_descriptor(ec);
  detail::throw_if(ec, "userpipe::writer::ready_descriptor");
  return fd;
}

void writer::refresh_ready(std::size_t want) noexcept {
  if (want == 0) want = writer_ready_room(capacity());
  ready_->refresh([&](wake_callback fn, void* ctx) { return park_end(want, fn, ctx); },
                  [&] { return state_->writer_wait.unpark(); });
}

void writer::withdraw_ready() noexcept {
  ready_->withdraw([&] { return state_->writer_wait.unpark(); });
}

int reader::ready_descriptor(std::error_code& ec) noexcept {
  if (make_ready_source(*this, ready_, ec)) refresh_ready(1);
  return ec ? -1 : ready_->fd();
}

int reader::ready_descriptor() {
  std::error_code ec;
  int const fd = ready_descriptor(ec);
  detail::throw_if(ec, "userpipe::reader::ready_descriptor");
  return fd;
}

void reader::refresh_ready(std::size_t want) noexcept {
  ready_->refresh([&](wake_callback fn, void* ctx) { return park_end(want, fn, ctx); },
                  [&] { return state_->reader_wait.unpark(); });
}

void reader::withdraw_ready() noexcept {
  ready_->withdraw([&] { return state_->reader_wait.unpark(); });
}

}  // namespace userpipe
