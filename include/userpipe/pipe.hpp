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
  /// Put the ring in a sealed memfd so that one end can be handed to
  /// another process (userpipe/shared.hpp: to_descriptor, adopt_reader,
  /// send_end, spawn_options::descriptors). The ends are the same types;
  /// a dead peer process reads as a closed end. Capacity is rounded up to
  /// whole pages. Costs a memfd, a socket pair and a mapping while an end is
  /// in this process.
  bool shared = false;
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
  std::uint64_t writer_yields = 0;  ///< sched_yield calls while waiting (each a system call)
  std::uint64_t reader_yields = 0;
  std::uint64_t wakes = 0;  ///< wake-ups issued by either side (system calls or callbacks)
};

/// A low-level hook for event loops (see reader::park): called once on the
/// thread that makes the end ready. Must not block or throw.
using wake_callback = detail::wake_callback;

class reader;
class writer;
class multi_writer;  // userpipe/multi_writer.hpp

namespace detail {
class ready_source;  // src/ready_event.hpp
struct end_access;
}  // namespace detail

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
  writer(writer&& other) noexcept
      : state_(std::exchange(other.state_, nullptr)),
        closed_(other.closed_),
        ready_(std::exchange(other.ready_, nullptr)) {}
  writer& operator=(writer&& other) noexcept;
  ~writer() { reset(); }

  /// Writes all of `data`, blocking while the pipe is full; a write larger
  /// than the capacity streams through. Throws broken_pipe if the reader is
  /// gone (some bytes may then have been written); the error_code form
  /// returns how many were. Every write call given no bytes returns 0 at
  /// once, reader or not, as write(2) on a Linux pipe does.
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
  [[nodiscard]] std::size_t write_for(std::span<std::byte const> data,
                                      std::chrono::duration<Rep, Period> timeout);
  template <class Rep, class Period>
  [[nodiscard]] std::size_t write_for(std::span<std::byte const> data,
                                      std::chrono::duration<Rep, Period> timeout,
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

  // ---- messages (packets) ------------------------------------------------
  //
  // Message mode keeps boundaries, like a pipe opened with O_DIRECT or a
  // SOCK_SEQPACKET socket: each write_message() is read back by exactly one
  // read_message() (or read_message_view()), whole, never merged with or
  // split from another. A pipe carries either messages or a byte stream:
  // the message calls frame each message (8 bytes of header, padding to a
  // multiple of 8, see docs/parity.md), and mixing them with the byte calls
  // on one pipe is detected where it can be (invalid_argument at the
  // writer, bad_message at the reader) but garbles the stream.

  /// The largest message this pipe takes: capacity() - 8 (0 below 16).
  std::size_t max_message_size() const noexcept;

  /// Writes `message` whole, blocking until the pipe has room for all of
  /// it; the reader sees all of it or nothing. Throws message_size if it is
  /// larger than max_message_size() (nothing written), broken_pipe if the
  /// reader is gone. An empty message sends nothing and never fails on an
  /// open end (as a packet pipe).
  void write_message(std::span<std::byte const> message);
  void write_message(std::span<std::byte const> message, std::error_code& ec) noexcept;
  void write_message(std::string_view message) { write_message(as_bytes(message)); }
  void write_message(std::string_view message, std::error_code& ec) noexcept {
    write_message(as_bytes(message), ec);
  }
  /// Never blocks: writes the message whole if it fits now, else throws (or
  /// sets) resource_unavailable_try_again and writes nothing.
  void try_write_message(std::span<std::byte const> message);
  void try_write_message(std::span<std::byte const> message, std::error_code& ec) noexcept;
  /// write_message with a deadline: timed_out if the message could not be
  /// written in time; then nothing of it is in the pipe.
  template <class Rep, class Period>
  void write_message_for(std::span<std::byte const> message, std::chrono::duration<Rep, Period> timeout);
  template <class Rep, class Period>
  void write_message_for(std::span<std::byte const> message, std::chrono::duration<Rep, Period> timeout,
                         std::error_code& ec) noexcept;
  void write_message_until(std::span<std::byte const> message, clock::time_point deadline);
  void write_message_until(std::span<std::byte const> message, clock::time_point deadline,
                           std::error_code& ec) noexcept;

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

  /// A descriptor for event loops that wait on descriptors (epoll, poll,
  /// libuv, GLib, Qt, io_uring): an eventfd, readable (POLLIN) while this
  /// end is ready to write, that is while at least min(4096, capacity())
  /// bytes are free or the reader is gone. Level-triggered, with one
  /// allowance: after the end stops being ready the descriptor may stay
  /// readable until a try_ call of this end (try_write_some, try_prepare,
  /// try_write_message) finds it would block; that call clears it and
  /// re-arms it. So on every wake-up write with try_ calls until one would
  /// block, as with any non-blocking descriptor; with edge-triggered epoll
  /// that is required, and no wake-up is then lost. Only watch it for
  /// reading; never read or write it yourself.
  ///
  /// Made on the first call (later calls return the same one), owned by
  /// this end, closed by close() or the destructor: take it out of your
  /// event loop first. A pipe never asked for one has none and pays nothing
  /// for it. It uses this end's park: park(), the Asio adapter and a
  /// blocking call of this end take the park from it, which leaves it
  /// readable until the next try_ call re-arms it. Call from the thread
  /// that uses this end; does not block. Throws std::system_error:
  /// bad_file_descriptor for an end that is not open, or the errno of
  /// eventfd(2) (too_many_files_open, ...).
  int ready_descriptor();
  int ready_descriptor(std::error_code& ec) noexcept;

 private:
  friend std::pair<reader, writer> make_pipe(options const&);
  friend class multi_writer;  // asks free_space() for its atomic writes
  friend struct detail::end_access;
  explicit writer(detail::pipe_state* state) noexcept : state_(state) {}

  static std::span<std::byte const> as_bytes(std::string_view s) noexcept {
    return {reinterpret_cast<std::byte const*>(s.data()), s.size()};
  }
  /// The inline path of a small write: true once all of `data` (at most a
  /// quantum, not empty) is copied and published into an open pipe with a
  /// reader and room; false, having done nothing, otherwise.
  bool push_small(std::span<std::byte const> data) noexcept;
  /// The non-blocking step of every write: checks, copies, publishes.
  std::size_t push(std::span<std::byte const> data, std::error_code& ec) noexcept;
  /// Blocks until `want` bytes are free, the reader closes, or the deadline.
  bool wait_for_room(std::size_t want, clock::time_point deadline, std::error_code& ec) noexcept;
  std::size_t write_blocking(std::span<std::byte const> data, bool all, clock::time_point deadline,
                             std::error_code& ec) noexcept;
  bool check_open(std::error_code& ec) const noexcept;
  bool check_reader(std::error_code& ec) const noexcept;
  void reset() noexcept;
  /// The ready descriptor's hooks (src/pipe.cpp): re-arm after a try_ call
  /// that would block (room for `want` bytes), withdraw before a wait.
  void refresh_ready(std::size_t want) noexcept;
  void withdraw_ready() noexcept;
  bool park_end(std::size_t want, wake_callback fn, void* ctx) noexcept;
  /// The non-blocking step of every message write: true once written (or
  /// empty); false with ec clear when it does not fit now.
  bool push_message(std::span<std::byte const> message, std::error_code& ec) noexcept;

  detail::pipe_state* state_ = nullptr;
  bool closed_ = false;
  detail::ready_source* ready_ = nullptr;  // made by ready_descriptor()
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
        small_reads_(std::exchange(other.small_reads_, 0)),
        line_pending_(std::exchange(other.line_pending_, 0)),
        line_copy_(std::move(other.line_copy_)),
        ready_(std::exchange(other.ready_, nullptr)) {}
  reader& operator=(reader&& other) noexcept;
  ~reader() { reset(); }

  /// Reads at least one byte, blocking while the pipe is empty; returns the
  /// count, 0 only at end-of-file (or for an empty buffer). After the last
  /// byte, a writer's close error is thrown (or set) instead, every time.
  /// A read that follows two reads that each emptied the pipe of less than
  /// 4 KiB first waits 0.4 µs: a writer streaming small writes then hands
  /// over tens of them per read instead of one (read_some_for/_until do the
  /// same; try_read_some never waits). A read after one that found the pipe
  /// empty returns as soon as a byte is written.
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
  bool read_line_view(std::string_view& line, std::error_code& ec) noexcept {
    return read_line_view(line, '\n', ec);
  }

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

  // ---- messages (packets); see writer::write_message ----------------------

  /// Reads the next message whole into `buffer`, blocking while there is
  /// none, and returns its size; 0 only at end-of-file (an empty message is
  /// never sent). After the last message, a writer's close error is thrown
  /// (or set) instead. A message larger than `buffer` is not truncated: it
  /// stays unread, the call throws message_size, and the error_code form
  /// sets message_size and returns the message's size, so that a caller can
  /// grow its buffer and read it (or learn it with read_message_view).
  /// bad_message: the pipe holds stream bytes, not a message.
  std::size_t read_message(std::span<std::byte> buffer);
  std::size_t read_message(std::span<std::byte> buffer, std::error_code& ec) noexcept;
  /// Never blocks: no whole message there and the writer open, throws (or
  /// sets) resource_unavailable_try_again.
  std::size_t try_read_message(std::span<std::byte> buffer);
  std::size_t try_read_message(std::span<std::byte> buffer, std::error_code& ec) noexcept;
  /// read_message with a deadline: timed_out if no message came in time.
  template <class Rep, class Period>
  std::size_t read_message_for(std::span<std::byte> buffer, std::chrono::duration<Rep, Period> timeout);
  template <class Rep, class Period>
  std::size_t read_message_for(std::span<std::byte> buffer, std::chrono::duration<Rep, Period> timeout,
                               std::error_code& ec) noexcept;
  std::size_t read_message_until(std::span<std::byte> buffer, clock::time_point deadline);
  std::size_t read_message_until(std::span<std::byte> buffer, clock::time_point deadline,
                                 std::error_code& ec) noexcept;

  /// Zero-copy read_message: sets `message` to the next whole message,
  /// contiguous, and returns true; false at end-of-file. Blocks while there
  /// is none. The view stays valid until release_message() or the next call
  /// on this reader (any call), which frees it; until then the writer
  /// cannot reuse its room. Where the message lies in one piece in the ring
  /// (always for a mirrored pipe) the view points into the ring; a message
  /// that straddles the ring's end is copied into a buffer the reader owns
  /// (grown to the largest such message, then reused) and freed from the
  /// ring at once. Errors as read_message (not_enough_memory if that buffer
  /// cannot grow).
  bool read_message_view(std::span<std::byte const>& message);
  bool read_message_view(std::span<std::byte const>& message, std::error_code& ec) noexcept;
  /// Never blocks: no whole message there and the writer open, sets
  /// resource_unavailable_try_again and returns false.
  bool try_read_message_view(std::span<std::byte const>& message, std::error_code& ec) noexcept;
  /// Frees the message of the last read_message_view now. Never blocks.
  void release_message() noexcept;

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

  /// A descriptor for event loops that wait on descriptors: an eventfd,
  /// readable (POLLIN) while this end is ready to read, that is while a byte
  /// is readable, or at end-of-file or the writer's close error.
  /// Level-triggered, with the same allowance as writer::ready_descriptor:
  /// it may stay readable after the end stops being ready until a try_ call
  /// of this end (try_read_some, try_peek, try_read_message,
  /// try_read_message_view) finds it would block, which clears and re-arms
  /// it. So on every wake-up read with try_ calls until one would block (or
  /// EOF); with edge-triggered epoll that is required, and no wake-up is
  /// then lost. Only watch it for reading; never read or write it yourself.
  ///
  /// Made on the first call (later calls return the same one), owned by
  /// this end, closed by close() or the destructor: take it out of your
  /// event loop first. A pipe never asked for one has none and pays nothing
  /// for it. It uses this end's park (see writer::ready_descriptor). Call
  /// from the thread that uses this end; does not block. Throws
  /// std::system_error: bad_file_descriptor for an end that is not open, or
  /// the errno of eventfd(2).
  int ready_descriptor();
  int ready_descriptor(std::error_code& ec) noexcept;

 private:
  friend std::pair<reader, writer> make_pipe(options const&);
  friend struct detail::end_access;
  explicit reader(detail::pipe_state* state) noexcept : state_(state) {}

  enum class status { data, empty, eof };
  /// The non-blocking step of every read: which of data, empty or EOF (an
  /// error close sets ec and reports eof).
  status poll(std::error_code& ec) noexcept;
  std::size_t pop(std::span<std::byte> buffer) noexcept;
  /// The inline path of a read: what pop() gets from an open reader (after
  /// freeing a line view); 0, having done nothing else, if it is not open.
  std::size_t take(std::span<std::byte> buffer) noexcept;
  /// take() for the blocking reads, which gather a fast stream of small
  /// writes (detail::stream_gather).
  std::size_t take_streaming(std::span<std::byte> buffer) noexcept;
  bool wait_for_data(std::size_t want, clock::time_point deadline) noexcept;
  std::size_t read_some_batched_until(std::span<std::byte> buffer, std::size_t min_size,
                                      clock::time_point gather_until, std::error_code& ec) noexcept;
  /// Continues a read of which `done` bytes are already in `buffer`.
  std::size_t read_blocking(std::span<std::byte> buffer, std::size_t done, bool all,
                            clock::time_point deadline, std::error_code& ec) noexcept;
  /// Also frees the line read_line_view left in the ring: every call on an
  /// open reader passes here first.
  bool check_open(std::error_code& ec) noexcept;
  void free_line_view() noexcept;
  bool read_line_view_slow(std::string_view& line, char delim, std::error_code& ec) noexcept;
  void reset() noexcept;
  /// The ready descriptor's hooks, as the writer's: re-arm for `want`
  /// readable bytes after a try_ call that would block, withdraw before a
  /// wait.
  void refresh_ready(std::size_t want) noexcept;
  void withdraw_ready() noexcept;
  bool park_end(std::size_t want, wake_callback fn, void* ctx) noexcept;

  // Message mode (src/message.cpp).
  enum class message_status { ready, partial, empty, eof, error };
  struct message_frame {
    std::size_t length = 0;            // payload bytes
    std::size_t framed = 0;            // bytes in the ring, header and padding included
    std::span<std::byte const> first;  // the payload's bytes before the ring's end
  };
  /// The non-blocking look at the next message: ready (frame set), partial
  /// (its frame is only partly published; frame.framed set), empty, eof or
  /// error (ec set). Consumes nothing.
  message_status next_message(message_frame& frame, std::error_code& ec) noexcept;
  void take_message(message_frame const& frame, std::byte* out) noexcept;
  void free_bytes(std::size_t n) noexcept;
  template <class Take>
  auto message_loop(clock::time_point deadline, bool blocking, std::error_code& ec, Take take) noexcept
      -> decltype(take(std::declval<message_frame const&>()));
  std::size_t read_message_until(std::span<std::byte> buffer, clock::time_point deadline, bool blocking,
                                 std::error_code& ec) noexcept;
  bool read_message_view_until(std::span<std::byte const>& message, clock::time_point deadline, bool blocking,
                               std::error_code& ec) noexcept;

  detail::pipe_state* state_ = nullptr;
  bool closed_ = false;
  int small_reads_ = 0;                    // consecutive reads that drained a little (take_streaming)
  std::size_t line_pending_ = 0;           // bytes of the last line or message view, still in the ring
  std::string line_copy_;                  // a line or message view that was not contiguous
  detail::ready_source* ready_ = nullptr;  // made by ready_descriptor()
};

/// The two ends' statistics are the pipe's; either end answers.
inline pipe_stats stats(reader const& r) noexcept { return r.stats(); }
inline pipe_stats stats(writer const& w) noexcept { return w.stats(); }

}  // namespace userpipe

#include "userpipe/detail/pipe_inl.hpp"
