// userpipe/pipe.hpp — a pipe whose data path lives in user space.
//
// make_pipe() returns a reader and a writer that share a bounded ring. A
// write copies into the ring and publishes with one atomic store; a read
// copies out and publishes with another. Neither makes a system call unless
// its side has to sleep (pipe full or empty) and the other side has to wake
// it. No file descriptor is used.
//
// Promises, as the kernel pipe makes them:
//  - the reader gets every byte in order, then end-of-file (read returns 0)
//    or the error the writer closed with;
//  - a write to a pipe whose reader is gone fails with broken_pipe;
//  - closing or destroying either end wakes the other end: nothing ever
//    blocks on a closed peer.
//
// Threads: one thread uses an end at a time; the reader and the writer may
// be on different threads, or on one thread with the non-blocking calls.
// Distinct ends: safe. One end shared between threads: unsafe.
//
// Errors: every call that can fail has a throwing form (std::system_error)
// and a form taking std::error_code& that never throws. The codes are the
// kernel's: broken_pipe (reader gone), bad_file_descriptor (moved-from or
// already closed end), timed_out, resource_unavailable_try_again (a try_
// call that would block), invalid_argument. A call that moved some bytes
// returns their count; an error is reported by a call that moved none, so
// no byte is ever unaccounted for (exception: write() of everything, whose
// error_code form returns the partial count).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "userpipe/detail/state.hpp"

namespace userpipe {

/// How to make a pipe. An aggregate: make_pipe({.capacity = 1 << 20}).
struct options {
  /// Bytes the pipe holds before a writer blocks; rounded up to a power of
  /// two. 0, or more than max_capacity, is invalid_argument.
  std::size_t capacity = 65536;
  /// Map the ring's pages twice back to back (a memfd, two mappings), so
  /// that peek() and prepare() return everything readable or free as one
  /// span, even across the ring's end, and prepare(n) always gives at least
  /// n contiguous bytes. Capacity is then also rounded up to whole pages.
  /// Costs two mappings and a transient descriptor at creation (see
  /// docs/streams.md for when it pays).
  bool mirrored = false;
};

inline constexpr std::size_t max_capacity = std::size_t{1} << 40;

/// What a pipe has done so far; the numbers that tell whether a capacity
/// fits a workload. Readable from either end at any time.
struct pipe_stats {
  std::uint64_t bytes_written = 0;
  std::uint64_t bytes_read = 0;
  std::uint64_t writer_waits = 0;   ///< calls that found the pipe full
  std::uint64_t reader_waits = 0;   ///< calls that found the pipe empty
  std::uint64_t writer_sleeps = 0;  ///< of those, how many slept in the kernel
  std::uint64_t reader_sleeps = 0;
  std::uint64_t wakes = 0;          ///< wake-ups issued by either side (system calls or callbacks)
};

/// A low-level hook for event loops (see reader::park): called once on the
/// thread that makes the end ready. Must not block or throw.
using wake_callback = detail::wake_callback;

class reader;
class writer;

/// Makes a pipe. Any thread. Does not block. Throws std::system_error:
/// invalid_argument for a bad capacity, not_enough_memory; for a mirrored
/// pipe also the errno of the memfd_create/ftruncate/mmap that failed
/// (too_many_files_open, not_enough_memory, ...).
std::pair<reader, writer> make_pipe(options const& opts = {});

/// The writing end. Move-only; destroying it closes it.
class writer {
 public:
  using clock = std::chrono::steady_clock;

  /// An end that is not open: every call fails with bad_file_descriptor.
  writer() noexcept = default;
  writer(writer&& other) noexcept : state_(std::exchange(other.state_, nullptr)), closed_(other.closed_) {}
  writer& operator=(writer&& other) noexcept;
  ~writer() { reset(); }

  /// Writes all of `data`, blocking while the pipe is full; a write larger
  /// than the capacity streams through. Throws broken_pipe if the reader is
  /// gone (some bytes may then have been written); the error_code form
  /// returns how many were.
  void write(std::span<std::byte const> data);
  std::size_t write(std::span<std::byte const> data, std::error_code& ec) noexcept;
  void write(std::string_view data) { write(as_bytes(data)); }
  std::size_t write(std::string_view data, std::error_code& ec) noexcept { return write(as_bytes(data), ec); }

  /// Writes at least one byte (blocking while full) and returns the count.
  std::size_t write_some(std::span<std::byte const> data);
  std::size_t write_some(std::span<std::byte const> data, std::error_code& ec) noexcept;
  std::size_t write_some(std::string_view data) { return write_some(as_bytes(data)); }

  /// Never blocks: writes what fits now. Nothing fits: the throwing form
  /// throws resource_unavailable_try_again, the other sets it and returns 0.
  std::size_t try_write_some(std::span<std::byte const> data);
  std::size_t try_write_some(std::span<std::byte const> data, std::error_code& ec) noexcept;
  std::size_t try_write_some(std::string_view data) { return try_write_some(as_bytes(data)); }

  /// Writes as much of `data` as it can before the deadline and returns the
  /// count, like write(2) with SO_SNDTIMEO: timed_out only if not a byte
  /// could be written. Whatever it returns is in the pipe, in order.
  template <class Rep, class Period>
  [[nodiscard]] std::size_t write_for(std::span<std::byte const> data, std::chrono::duration<Rep, Period> timeout);
  template <class Rep, class Period>
  [[nodiscard]] std::size_t write_for(std::span<std::byte const> data, std::chrono::duration<Rep, Period> timeout,
                                      std::error_code& ec) noexcept;
  template <class Rep, class Period>
  [[nodiscard]] std::size_t write_for(std::string_view data, std::chrono::duration<Rep, Period> timeout) {
    return write_for(as_bytes(data), timeout);
  }
  [[nodiscard]] std::size_t write_until(std::span<std::byte const> data, clock::time_point deadline);
  [[nodiscard]] std::size_t write_until(std::span<std::byte const> data, clock::time_point deadline,
                                        std::error_code& ec) noexcept;

  /// Zero-copy write: blocks until at least `min_size` bytes are free
  /// (1 <= min_size <= capacity, else invalid_argument) and returns the
  /// free bytes that are contiguous in the ring: never empty, but across the
  /// ring's wrap possibly fewer than min_size, unless the pipe is mirrored:
  /// then all free bytes, at least min_size. Fill a prefix, then commit.
  /// Throws broken_pipe if the reader is gone.
  std::span<std::byte> prepare(std::size_t min_size = 1);
  std::span<std::byte> prepare(std::size_t min_size, std::error_code& ec) noexcept;
  /// Never blocks: the contiguous free bytes now, possibly none.
  std::span<std::byte> try_prepare(std::error_code& ec) noexcept;

  /// Publishes the first n bytes of the last prepared span. n larger than
  /// the free space is invalid_argument and changes nothing.
  void commit(std::size_t n);
  void commit(std::size_t n, std::error_code& ec) noexcept;

  /// Closes the end: the reader gets the bytes already written, then EOF,
  /// or `reason` if it is an error. The first close wins; later ones do
  /// nothing. Wakes a blocked reader. Never throws, never blocks.
  void close() noexcept { close(std::error_code{}); }
  void close(std::error_code reason) noexcept;

  /// Open: made by make_pipe, not moved from, not closed.
  bool is_open() const noexcept { return state_ != nullptr && !closed_; }
  /// True once the reader is closed or destroyed: writes will fail.
  bool reader_closed() const noexcept;
  std::size_t capacity() const noexcept { return state_ ? state_->bytes.capacity() : 0; }
  pipe_stats stats() const noexcept;

  /// Event-loop hook, for adapters such as userpipe/asio.hpp. If fewer than
  /// `want` bytes are free and the reader is open, arranges for fn(ctx) to
  /// be called once, by the reader's thread inside its consume or close (or
  /// by this end's close), when they are, and returns true. Otherwise
  /// parks nothing and returns false. One park at a time.
  bool park(std::size_t want, wake_callback fn, void* ctx) noexcept;
  /// Withdraws a park. True: fn will not be called. False: fn has run.
  /// Either way no fn of this end is running when it returns (if the
  /// reader's thread is inside one, this waits until it returns; so does
  /// close).
  bool unpark() noexcept { return state_ != nullptr && state_->writer_wait.unpark(); }

 private:
  friend std::pair<reader, writer> make_pipe(options const&);
  explicit writer(detail::pipe_state* state) noexcept : state_(state) {}

  static std::span<std::byte const> as_bytes(std::string_view s) noexcept {
    return {reinterpret_cast<std::byte const*>(s.data()), s.size()};
  }
  /// The non-blocking step of every write: checks, copies, publishes.
  std::size_t push(std::span<std::byte const> data, std::error_code& ec) noexcept;
  /// Blocks until `want` bytes are free, the reader closes, or the deadline.
  bool wait_for_room(std::size_t want, clock::time_point deadline, std::error_code& ec) noexcept;
  std::size_t write_blocking(std::span<std::byte const> data, bool all, clock::time_point deadline,
                             std::error_code& ec) noexcept;
  bool check_open(std::error_code& ec) const noexcept;
  bool check_reader(std::error_code& ec) const noexcept;
  void reset() noexcept;

  detail::pipe_state* state_ = nullptr;
  bool closed_ = false;
};

/// The reading end. Move-only; destroying it closes it.
class reader {
 public:
  using clock = std::chrono::steady_clock;

  /// An end that is not open: every call fails with bad_file_descriptor.
  reader() noexcept = default;
  reader(reader&& other) noexcept
      : state_(std::exchange(other.state_, nullptr)),
        closed_(other.closed_),
        line_pending_(std::exchange(other.line_pending_, 0)),
        line_copy_(std::move(other.line_copy_)) {}
  reader& operator=(reader&& other) noexcept;
  ~reader() { reset(); }

  /// Reads at least one byte, blocking while the pipe is empty; returns the
  /// count, 0 only at end-of-file (or for an empty buffer). After the last
  /// byte, a writer's close error is thrown (or set) instead, every time.
  std::size_t read_some(std::span<std::byte> buffer);
  std::size_t read_some(std::span<std::byte> buffer, std::error_code& ec) noexcept;

  /// Fills `buffer`, blocking as needed; returns less only at end-of-file.
  /// A writer's close error after some bytes: those are returned, the error
  /// comes with the next call.
  std::size_t read(std::span<std::byte> buffer);
  std::size_t read(std::span<std::byte> buffer, std::error_code& ec) noexcept;

  /// Like std::getline: replaces `line` with the bytes up to `delim`
  /// (consumed, not stored). False at end-of-file with nothing read; a last
  /// line without delimiter is returned as a line. On a writer's close error
  /// `line` holds the partial line and the error is thrown (or set, and
  /// false returned). Allocates only when `line` must grow.
  bool read_line(std::string& line, char delim = '\n');
  bool read_line(std::string& line, char delim, std::error_code& ec) noexcept;
  bool read_line(std::string& line, std::error_code& ec) noexcept { return read_line(line, '\n', ec); }

  /// Zero-copy read_line: sets `line` to the bytes up to `delim` where they
  /// lie in the ring, and leaves them there until the next call on this
  /// reader (any call), which frees them: `line` is valid until then. When
  /// the line is not contiguous in the ring (it straddles the wrap of a
  /// pipe that is not mirrored, or the writer has published only part of it
  /// so far) its bytes are copied into a buffer the reader owns, and freed
  /// from the ring at once so the writer is never held up; the buffer grows
  /// to the longest such line and is then reused, so steady state does not
  /// allocate. Returns, errors and the last line without delimiter as
  /// read_line. Blocks while the pipe is empty. stats() count the line's
  /// bytes as read once they are freed.
  bool read_line_view(std::string_view& line, char delim = '\n');
  bool read_line_view(std::string_view& line, char delim, std::error_code& ec) noexcept;
  bool read_line_view(std::string_view& line, std::error_code& ec) noexcept { return read_line_view(line, '\n', ec); }

  /// Never blocks: reads what is there. Nothing there and the writer open:
  /// throws (or sets) resource_unavailable_try_again. 0 without error is EOF.
  std::size_t try_read_some(std::span<std::byte> buffer);
  std::size_t try_read_some(std::span<std::byte> buffer, std::error_code& ec) noexcept;

  /// read_some with a deadline: timed_out if no byte came in time; nothing
  /// is consumed then.
  template <class Rep, class Period>
  std::size_t read_some_for(std::span<std::byte> buffer, std::chrono::duration<Rep, Period> timeout);
  template <class Rep, class Period>
  std::size_t read_some_for(std::span<std::byte> buffer, std::chrono::duration<Rep, Period> timeout,
                            std::error_code& ec) noexcept;
  std::size_t read_some_until(std::span<std::byte> buffer, clock::time_point deadline);
  std::size_t read_some_until(std::span<std::byte> buffer, clock::time_point deadline,
                              std::error_code& ec) noexcept;

  /// Batching read, for consumers that pay per call (a send(2) per chunk):
  /// waits until min(min_size, buffer.size(), capacity / 2) bytes are
  /// readable, the writer closes, or `gather` has passed, then reads like
  /// read_some (so after `gather` it still waits for one byte). Returns the
  /// count, 0 only at EOF. The cap at half the ring keeps it from waiting
  /// for bytes a writer blocked in write() could never add; a writer blocked
  /// in prepare(n) with n over half the ring can still be waiting for this
  /// read (model/README.md), and then the gather ends only at its deadline:
  /// keep `gather` short (milliseconds), it is a latency bound.
  template <class Rep, class Period>
  std::size_t read_some_batched(std::span<std::byte> buffer, std::size_t min_size,
                                std::chrono::duration<Rep, Period> gather);
  template <class Rep, class Period>
  std::size_t read_some_batched(std::span<std::byte> buffer, std::size_t min_size,
                                std::chrono::duration<Rep, Period> gather, std::error_code& ec) noexcept;

  /// Zero-copy read: blocks until a byte is readable and returns the
  /// readable bytes that are contiguous in the ring; empty means EOF. Valid
  /// until the next consume or close. Parse a prefix, then consume.
  std::span<std::byte const> peek();
  std::span<std::byte const> peek(std::error_code& ec) noexcept;
  /// Never blocks: the contiguous readable bytes now, possibly none (check
  /// ec for resource_unavailable_try_again against EOF).
  std::span<std::byte const> try_peek(std::error_code& ec) noexcept;

  /// Frees the first n readable bytes. More than available() is
  /// invalid_argument and changes nothing.
  void consume(std::size_t n);
  void consume(std::size_t n, std::error_code& ec) noexcept;

  /// Bytes readable now without blocking (0 for a closed end). The line
  /// last returned by read_line_view does not count: it is already read.
  std::size_t available() const noexcept;

  /// Closes the end: unread bytes are dropped, the writer's next write (or
  /// the one it is blocked in) fails with broken_pipe, or with `reason` if
  /// given. First close wins. Never throws, never blocks.
  void close() noexcept { close(std::error_code{}); }
  void close(std::error_code reason) noexcept;

  bool is_open() const noexcept { return state_ != nullptr && !closed_; }
  std::size_t capacity() const noexcept { return state_ ? state_->bytes.capacity() : 0; }
  pipe_stats stats() const noexcept;

  /// Event-loop hook, the mirror of writer::park: if fewer than `want`
  /// bytes are readable and the writer is open, arranges for fn(ctx) to be
  /// called once, by the writer's thread inside its commit or close (or by
  /// this end's close), when they are, and returns true. Otherwise parks
  /// nothing and returns false. One park at a time.
  bool park(std::size_t want, wake_callback fn, void* ctx) noexcept;
  bool unpark() noexcept { return state_ != nullptr && state_->reader_wait.unpark(); }

 private:
  friend std::pair<reader, writer> make_pipe(options const&);
  explicit reader(detail::pipe_state* state) noexcept : state_(state) {}

  enum class status { data, empty, eof };
  /// The non-blocking step of every read: which of data, empty or EOF (an
  /// error close sets ec and reports eof).
  status poll(std::error_code& ec) noexcept;
  std::size_t pop(std::span<std::byte> buffer) noexcept;
  bool wait_for_data(std::size_t want, clock::time_point deadline) noexcept;
  std::size_t read_some_batched_until(std::span<std::byte> buffer, std::size_t min_size,
                                      clock::time_point gather_until, std::error_code& ec) noexcept;
  /// Continues a read of which `done` bytes are already in `buffer`.
  std::size_t read_blocking(std::span<std::byte> buffer, std::size_t done, bool all, clock::time_point deadline,
                            std::error_code& ec) noexcept;
  /// Also frees the line read_line_view left in the ring: every call on an
  /// open reader passes here first.
  bool check_open(std::error_code& ec) noexcept;
  void release_line() noexcept;
  bool read_line_view_slow(std::string_view& line, char delim, std::error_code& ec) noexcept;
  void reset() noexcept;

  detail::pipe_state* state_ = nullptr;
  bool closed_ = false;
  std::size_t line_pending_ = 0;  // bytes of the last line view, still in the ring
  std::string line_copy_;         // a line view that was not contiguous
};

/// The two ends' statistics are the pipe's; either end answers.
inline pipe_stats stats(reader const& r) noexcept { return r.stats(); }
inline pipe_stats stats(writer const& w) noexcept { return w.stats(); }

// ---------------------------------------------------------------------------
// Implementation: the fast paths are inline so that a small write is a
// memcpy and a store; everything that may sleep lives in src/pipe.cpp.

namespace detail {
[[noreturn]] void throw_error(std::error_code ec, char const* what);
inline void throw_if(std::error_code ec, char const* what) {
  if (ec) [[unlikely]]
    throw_error(ec, what);
}
inline writer::clock::time_point deadline_after(auto timeout) noexcept {
  auto const now = writer::clock::now();
  if (timeout <= decltype(timeout)::zero()) return now;
  // Compared in floating point: hours::max() in nanoseconds would overflow.
  using seconds = std::chrono::duration<double>;
  if (seconds(timeout) >= seconds(writer::clock::time_point::max() - now)) return writer::clock::time_point::max();
  return now + std::chrono::ceil<writer::clock::duration>(timeout);
}
}  // namespace detail

inline bool writer::check_open(std::error_code& ec) const noexcept {
  if (state_ == nullptr || closed_) [[unlikely]] {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return false;
  }
  return true;
}

inline bool writer::check_reader(std::error_code& ec) const noexcept {
  if (state_->closed.load(std::memory_order_acquire) & detail::pipe_state::reader_closed) [[unlikely]] {
    ec = state_->reader_reason ? state_->reader_reason : std::make_error_code(std::errc::broken_pipe);
    return false;
  }
  return true;
}

inline std::size_t writer::push(std::span<std::byte const> data, std::error_code& ec) noexcept {
  ec.clear();
  if (!check_open(ec) || !check_reader(ec)) return 0;
  auto& ring = state_->bytes;
  std::size_t done = 0;
  do {  // in quanta, so the reader copies out while we copy in
    std::size_t const n = ring.push(data.data() + done, std::min(data.size() - done, ring.quantum()));
    if (n == 0) break;
    done += n;
    if (state_->reader_wait.notify(ring.publish(n))) [[unlikely]]
      detail::side_counters::bump(state_->writer_counters.wakes);
  } while (done < data.size());
  return done;
}

inline std::size_t writer::write(std::span<std::byte const> data, std::error_code& ec) noexcept {
  std::size_t const n = push(data, ec);
  if (n == data.size() || ec) return n;
  return n + write_blocking(data.subspan(n), true, clock::time_point::max(), ec);
}

inline void writer::write(std::span<std::byte const> data) {
  std::error_code ec;
  write(data, ec);
  detail::throw_if(ec, "userpipe::writer::write");
}

inline std::size_t writer::write_some(std::span<std::byte const> data, std::error_code& ec) noexcept {
  std::size_t const n = push(data, ec);
  if (n != 0 || ec || data.empty()) return n;
  return write_blocking(data, false, clock::time_point::max(), ec);
}

inline std::size_t writer::write_some(std::span<std::byte const> data) {
  std::error_code ec;
  std::size_t const n = write_some(data, ec);
  detail::throw_if(ec, "userpipe::writer::write_some");
  return n;
}

inline std::size_t writer::try_write_some(std::span<std::byte const> data, std::error_code& ec) noexcept {
  std::size_t const n = push(data, ec);
  if (n == 0 && !ec && !data.empty()) ec = std::make_error_code(std::errc::resource_unavailable_try_again);
  return n;
}

inline std::size_t writer::try_write_some(std::span<std::byte const> data) {
  std::error_code ec;
  std::size_t const n = try_write_some(data, ec);
  detail::throw_if(ec, "userpipe::writer::try_write_some");
  return n;
}

inline std::size_t writer::write_until(std::span<std::byte const> data, clock::time_point deadline,
                                       std::error_code& ec) noexcept {
  std::size_t const n = push(data, ec);
  if (n == data.size() || ec) return n;
  std::size_t const more = write_blocking(data.subspan(n), true, deadline, ec);
  // Partial progress is success (the bytes are in the pipe); only a call
  // that wrote nothing reports the timeout.
  if (n + more != 0 && ec == std::errc::timed_out) ec.clear();
  return n + more;
}

inline std::size_t writer::write_until(std::span<std::byte const> data, clock::time_point deadline) {
  std::error_code ec;
  std::size_t const n = write_until(data, deadline, ec);
  detail::throw_if(ec, "userpipe::writer::write_until");
  return n;
}

template <class Rep, class Period>
std::size_t writer::write_for(std::span<std::byte const> data, std::chrono::duration<Rep, Period> timeout,
                              std::error_code& ec) noexcept {
  return write_until(data, detail::deadline_after(timeout), ec);
}

template <class Rep, class Period>
std::size_t writer::write_for(std::span<std::byte const> data, std::chrono::duration<Rep, Period> timeout) {
  return write_until(data, detail::deadline_after(timeout));
}

inline std::span<std::byte> writer::try_prepare(std::error_code& ec) noexcept {
  ec.clear();
  if (!check_open(ec) || !check_reader(ec)) return {};
  return state_->bytes.writable();
}

inline std::span<std::byte> writer::prepare(std::size_t min_size, std::error_code& ec) noexcept {
  ec.clear();
  if (!check_open(ec) || !check_reader(ec)) return {};
  if (min_size == 0 || min_size > capacity()) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return {};
  }
  if (state_->bytes.free_space(min_size) < min_size && !wait_for_room(min_size, clock::time_point::max(), ec))
    return {};
  return state_->bytes.writable(min_size);
}

inline std::span<std::byte> writer::prepare(std::size_t min_size) {
  std::error_code ec;
  auto span = prepare(min_size, ec);
  detail::throw_if(ec, "userpipe::writer::prepare");
  return span;
}

inline void writer::commit(std::size_t n, std::error_code& ec) noexcept {
  ec.clear();
  if (!check_open(ec)) return;
  if (n > state_->bytes.free_space(n)) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return;
  }
  if (n == 0) return;
  std::uint64_t const head = state_->bytes.publish(n);
  if (state_->reader_wait.notify(head)) [[unlikely]]
    detail::side_counters::bump(state_->writer_counters.wakes);
}

inline void writer::commit(std::size_t n) {
  std::error_code ec;
  commit(n, ec);
  detail::throw_if(ec, "userpipe::writer::commit");
}

inline bool writer::reader_closed() const noexcept {
  return state_ != nullptr &&
         (state_->closed.load(std::memory_order_acquire) & detail::pipe_state::reader_closed) != 0;
}

// ---- reader ---------------------------------------------------------------

inline void reader::release_line() noexcept {
  std::uint64_t const tail = state_->bytes.release(std::exchange(line_pending_, 0));
  if (state_->writer_wait.notify(tail)) [[unlikely]]
    detail::side_counters::bump(state_->reader_counters.wakes);
}

inline bool reader::check_open(std::error_code& ec) noexcept {
  if (state_ == nullptr || closed_) [[unlikely]] {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return false;
  }
  if (line_pending_ != 0) release_line();
  return true;
}

inline std::size_t reader::pop(std::span<std::byte> buffer) noexcept {
  auto& ring = state_->bytes;
  std::size_t done = 0;
  do {  // in quanta, so the writer refills while we copy out
    std::size_t const n = ring.pop(buffer.data() + done, std::min(buffer.size() - done, ring.quantum()));
    if (n == 0) break;
    done += n;
    if (state_->writer_wait.notify(ring.release(n))) [[unlikely]]
      detail::side_counters::bump(state_->reader_counters.wakes);
  } while (done < buffer.size());
  return done;
}

inline reader::status reader::poll(std::error_code& ec) noexcept {
  if (state_->bytes.readable_size(1) != 0) return status::data;
  if ((state_->closed.load(std::memory_order_acquire) & detail::pipe_state::writer_closed) == 0)
    return status::empty;
  // The writer published its last bytes before it set the flag: look again.
  if (state_->bytes.readable_size(1) != 0) return status::data;
  ec = state_->writer_reason;
  return status::eof;
}

inline std::size_t reader::read_some(std::span<std::byte> buffer, std::error_code& ec) noexcept {
  ec.clear();
  if (!check_open(ec)) return 0;
  if (std::size_t const n = pop(buffer); n != 0 || buffer.empty()) return n;
  return read_blocking(buffer, 0, false, clock::time_point::max(), ec);
}

inline std::size_t reader::read_some(std::span<std::byte> buffer) {
  std::error_code ec;
  std::size_t const n = read_some(buffer, ec);
  detail::throw_if(ec, "userpipe::reader::read_some");
  return n;
}

inline std::size_t reader::read(std::span<std::byte> buffer, std::error_code& ec) noexcept {
  ec.clear();
  if (!check_open(ec)) return 0;
  std::size_t const n = pop(buffer);
  if (n == buffer.size()) return n;
  return read_blocking(buffer, n, true, clock::time_point::max(), ec);
}

inline std::size_t reader::read(std::span<std::byte> buffer) {
  std::error_code ec;
  std::size_t const n = read(buffer, ec);
  detail::throw_if(ec, "userpipe::reader::read");
  return n;
}

inline std::size_t reader::try_read_some(std::span<std::byte> buffer, std::error_code& ec) noexcept {
  ec.clear();
  if (!check_open(ec) || buffer.empty()) return 0;
  if (std::size_t const n = pop(buffer); n != 0) return n;
  if (poll(ec) == status::empty) {
    ec = std::make_error_code(std::errc::resource_unavailable_try_again);
    return 0;
  }
  return pop(buffer);  // data that raced in with the close, or 0 at EOF
}

inline std::size_t reader::try_read_some(std::span<std::byte> buffer) {
  std::error_code ec;
  std::size_t const n = try_read_some(buffer, ec);
  detail::throw_if(ec, "userpipe::reader::try_read_some");
  return n;
}

inline std::size_t reader::read_some_until(std::span<std::byte> buffer, clock::time_point deadline,
                                           std::error_code& ec) noexcept {
  ec.clear();
  if (!check_open(ec)) return 0;
  if (std::size_t const n = pop(buffer); n != 0 || buffer.empty()) return n;
  return read_blocking(buffer, 0, false, deadline, ec);
}

inline std::size_t reader::read_some_until(std::span<std::byte> buffer, clock::time_point deadline) {
  std::error_code ec;
  std::size_t const n = read_some_until(buffer, deadline, ec);
  detail::throw_if(ec, "userpipe::reader::read_some_until");
  return n;
}

template <class Rep, class Period>
std::size_t reader::read_some_for(std::span<std::byte> buffer, std::chrono::duration<Rep, Period> timeout,
                                  std::error_code& ec) noexcept {
  return read_some_until(buffer, detail::deadline_after(timeout), ec);
}

template <class Rep, class Period>
std::size_t reader::read_some_for(std::span<std::byte> buffer, std::chrono::duration<Rep, Period> timeout) {
  return read_some_until(buffer, detail::deadline_after(timeout));
}

template <class Rep, class Period>
std::size_t reader::read_some_batched(std::span<std::byte> buffer, std::size_t min_size,
                                      std::chrono::duration<Rep, Period> gather, std::error_code& ec) noexcept {
  return read_some_batched_until(buffer, min_size, detail::deadline_after(gather), ec);
}

template <class Rep, class Period>
std::size_t reader::read_some_batched(std::span<std::byte> buffer, std::size_t min_size,
                                      std::chrono::duration<Rep, Period> gather) {
  std::error_code ec;
  std::size_t const n = read_some_batched_until(buffer, min_size, detail::deadline_after(gather), ec);
  detail::throw_if(ec, "userpipe::reader::read_some_batched");
  return n;
}

inline std::span<std::byte const> reader::try_peek(std::error_code& ec) noexcept {
  ec.clear();
  if (!check_open(ec)) return {};
  switch (poll(ec)) {
    case status::data:
      return state_->bytes.readable();
    case status::empty:
      ec = std::make_error_code(std::errc::resource_unavailable_try_again);
      return {};
    case status::eof:
      return {};
  }
  return {};
}

inline std::span<std::byte const> reader::peek(std::error_code& ec) noexcept {
  ec.clear();
  if (!check_open(ec)) return {};
  if (auto span = state_->bytes.readable(); !span.empty()) return span;
  for (;;) {
    switch (poll(ec)) {
      case status::data:
        return state_->bytes.readable();
      case status::eof:
        return {};
      case status::empty:
        wait_for_data(1, clock::time_point::max());
    }
  }
}

inline std::span<std::byte const> reader::peek() {
  std::error_code ec;
  auto span = peek(ec);
  detail::throw_if(ec, "userpipe::reader::peek");
  return span;
}

inline void reader::consume(std::size_t n, std::error_code& ec) noexcept {
  ec.clear();
  if (!check_open(ec)) return;
  if (n > state_->bytes.readable_size(n)) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return;
  }
  if (n == 0) return;
  std::uint64_t const tail = state_->bytes.release(n);
  if (state_->writer_wait.notify(tail)) [[unlikely]]
    detail::side_counters::bump(state_->reader_counters.wakes);
}

inline void reader::consume(std::size_t n) {
  std::error_code ec;
  consume(n, ec);
  detail::throw_if(ec, "userpipe::reader::consume");
}

inline std::size_t reader::available() const noexcept {
  if (state_ == nullptr || closed_) return 0;
  auto const& ring = state_->bytes;
  return static_cast<std::size_t>(ring.head_index().load(std::memory_order_acquire) - ring.tail()) - line_pending_;
}

inline bool reader::read_line_view(std::string_view& line, char delim, std::error_code& ec) noexcept {
  ec.clear();
  if (!check_open(ec)) return false;
  // Fast path: a whole line is already contiguous in the ring.
  auto const span = state_->bytes.readable();
  auto const* chars = reinterpret_cast<char const*>(span.data());
  if (auto const* hit = static_cast<char const*>(std::memchr(chars, delim, span.size()))) {
    line = {chars, hit};
    line_pending_ = static_cast<std::size_t>(hit - chars) + 1;
    return true;
  }
  return read_line_view_slow(line, delim, ec);
}

inline bool reader::read_line_view(std::string_view& line, char delim) {
  std::error_code ec;
  bool const got = read_line_view(line, delim, ec);
  detail::throw_if(ec, "userpipe::reader::read_line_view");
  return got;
}

}  // namespace userpipe
