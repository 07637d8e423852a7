// userpipe/multi_writer.hpp — several writers for one pipe, each on its own
// thread, with the kernel pipe's promises: small writes are atomic, and the
// reader sees end-of-file only when the last writer has closed.
//
// A multi_writer takes over a pipe's writer; clone() makes more. All of them
// write through that one writer under a lock the pipe's writers share (spin
// briefly, then yield, then sleep on a futex), so a plain writer pays
// nothing for this feature: only pipes that have several writers take the
// lock. Every call holds the pipe for its whole duration, which gives:
//  - write() and write_message() are never interleaved with another
//    writer's bytes, whatever their size (a large blocking write holds the
//    other writers back until it is done, like a lock around the writer);
//  - write_some() and try_write_some() of at most atomic_write_max bytes
//    write all of them or nothing (try_: resource_unavailable_try_again),
//    like a kernel pipe's PIPE_BUF; larger ones write what fits, and the
//    count they return is the boundary at which another writer's bytes may
//    follow;
//  - prepare() holds the pipe for this writer until commit(), so a
//    prepare/commit is atomic too (commit(0) gives the pipe back unused).
//
// Closing: each writer's close() (or destructor) closes only that writer;
// the reader gets end-of-file after the last one. A reason given to close()
// by any writer is kept (the first one) and reaches the reader, after all
// writers' bytes, when the last writer closes. broken_pipe reaches every
// writer: the one blocked in a write is woken by the reader's close, the
// others find it when they get the pipe.
//
// In-process only: the lock and the count of open writers live in this
// process's memory. A pipe shared between processes would need them in the
// shared mapping, and a process that died holding the lock would wedge
// every other writer (a robust futex could tell, at the cost of a list
// the kernel walks at exit); not done.
//
// Threads: distinct multi_writers (clones): safe, each from its own thread.
// One multi_writer object: one thread at a time, as any end. The ready
// descriptor and park() are not offered: the pipe's one writer wait slot
// cannot serve several threads.
#pragma once

#include <chrono>
#include <cstddef>
#include <span>
#include <string_view>
#include <system_error>

#include "userpipe/pipe.hpp"

namespace userpipe {

namespace detail {
struct writer_group;  // src/multi_writer.cpp
}

class multi_writer {
 public:
  using clock = std::chrono::steady_clock;

  /// Writes and prepares of at most this many bytes are atomic.
  static constexpr std::size_t atomic_write_max = 4096;

  /// A writer that is not open: every call fails with bad_file_descriptor.
  multi_writer() noexcept = default;
  /// Takes over `w` (left not open). Throws bad_file_descriptor if `w` is
  /// not open, not_enough_memory. Does not block.
  explicit multi_writer(writer&& w);
  multi_writer(multi_writer&& other) noexcept;
  multi_writer& operator=(multi_writer&& other) noexcept;
  ~multi_writer();

  /// Another writer of the same pipe, open until it is closed. Throws
  /// bad_file_descriptor if this one is not open, not_enough_memory. Never
  /// blocks; any thread that may use this object.
  multi_writer clone() const;
  multi_writer clone(std::error_code& ec) const noexcept;

  /// As writer::write, never interleaved with another writer's bytes.
  /// Blocks while another writer holds the pipe.
  void write(std::span<std::byte const> data);
  std::size_t write(std::span<std::byte const> data, std::error_code& ec) noexcept;
  void write(std::string_view data) { write(as_bytes(data)); }
  std::size_t write(std::string_view data, std::error_code& ec) noexcept { return write(as_bytes(data), ec); }

  /// As writer::write_some; at most atomic_write_max bytes: all of them.
  std::size_t write_some(std::span<std::byte const> data);
  std::size_t write_some(std::span<std::byte const> data, std::error_code& ec) noexcept;

  /// As writer::try_write_some; at most atomic_write_max bytes: all or
  /// nothing. Also resource_unavailable_try_again if another writer holds
  /// the pipe for longer than a short spin (it may be blocked in a write).
  std::size_t try_write_some(std::span<std::byte const> data);
  std::size_t try_write_some(std::span<std::byte const> data, std::error_code& ec) noexcept;

  /// As writer::write_until: waiting for the pipe counts against the
  /// deadline. At most atomic_write_max bytes: all of them, or none and
  /// timed_out. Larger: timed_out only if not a byte was written, and the
  /// count returned is where another writer's bytes may follow.
  std::size_t write_until(std::span<std::byte const> data, clock::time_point deadline);
  std::size_t write_until(std::span<std::byte const> data, clock::time_point deadline,
                          std::error_code& ec) noexcept;
  template <class Rep, class Period>
  std::size_t write_for(std::span<std::byte const> data, std::chrono::duration<Rep, Period> timeout) {
    return write_until(data, clock::now() + std::chrono::ceil<clock::duration>(timeout));
  }
  template <class Rep, class Period>
  std::size_t write_for(std::span<std::byte const> data, std::chrono::duration<Rep, Period> timeout,
                        std::error_code& ec) noexcept {
    return write_until(data, clock::now() + std::chrono::ceil<clock::duration>(timeout), ec);
  }

  /// As writer::prepare, and holds the pipe for this writer until commit():
  /// no other writer writes in between. On an error nothing is held.
  std::span<std::byte> prepare(std::size_t min_size = 1);
  std::span<std::byte> prepare(std::size_t min_size, std::error_code& ec) noexcept;
  /// As writer::try_prepare; holds the pipe if the span is not empty.
  std::span<std::byte> try_prepare(std::error_code& ec) noexcept;
  /// As writer::commit, and gives the pipe back (commit(0) too). Without a
  /// prepare before, takes the pipe for the commit only.
  void commit(std::size_t n);
  void commit(std::size_t n, std::error_code& ec) noexcept;

  /// As writer's message calls; a message is never interleaved anyway.
  void write_message(std::span<std::byte const> message);
  void write_message(std::span<std::byte const> message, std::error_code& ec) noexcept;
  void write_message(std::string_view message) { write_message(as_bytes(message)); }
  void try_write_message(std::span<std::byte const> message, std::error_code& ec) noexcept;
  void write_message_until(std::span<std::byte const> message, clock::time_point deadline,
                           std::error_code& ec) noexcept;

  /// Closes this writer (see the top of this file); a pipe still held by
  /// its prepare is given back. Never throws; does not block.
  void close() noexcept { close(std::error_code{}); }
  void close(std::error_code reason) noexcept;

  bool is_open() const noexcept { return group_ != nullptr && !closed_; }
  bool reader_closed() const noexcept;
  std::size_t capacity() const noexcept;
  std::size_t max_message_size() const noexcept;
  pipe_stats stats() const noexcept;

 private:
  explicit multi_writer(detail::writer_group* group) noexcept : group_(group) {}
  static std::span<std::byte const> as_bytes(std::string_view s) noexcept {
    return {reinterpret_cast<std::byte const*>(s.data()), s.size()};
  }
  bool check_open(std::error_code& ec) const noexcept;
  void reset() noexcept;

  detail::writer_group* group_ = nullptr;
  bool closed_ = false;
  bool holding_ = false;  // a prepare holds the pipe
};

}  // namespace userpipe
