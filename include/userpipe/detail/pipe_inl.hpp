// userpipe/detail/pipe_inl.hpp — the inline bodies of userpipe/pipe.hpp.
//
// The fast paths are inline so that a small write is a memcpy and a store;
// everything that may sleep, close or run once per pipe lives in
// src/pipe.cpp. Included at the end of pipe.hpp only: read the contract
// there.
#pragma once

#include <cstring>

#include "userpipe/detail/error.hpp"

namespace userpipe {

inline bool writer::check_open(std::error_code& ec) const noexcept {
  if (state_ == nullptr || closed_) [[unlikely]] {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return false;
  }
  return true;
}

inline bool writer::check_reader(std::error_code& ec) const noexcept {
  if (state_->closed_bits() & detail::pipe_state::reader_closed) [[unlikely]] {
    ec = state_->reader_close_reason();
    return false;
  }
  return true;
}

inline bool writer::push_small(std::span<std::byte const> data) noexcept {
  if (state_ == nullptr || closed_) [[unlikely]]
    return false;
  auto& ring = state_->bytes;
  // One unsigned compare for 0 < size <= quantum: an empty write takes
  // the general path.
  if (data.size() - 1 >= ring.quantum()) return false;
  if (state_->closed_bits() & detail::pipe_state::reader_closed) [[unlikely]]
    return false;
  if (!ring.push_whole(data.data(), data.size())) return false;
  if (state_->reader_wait.notify(ring.publish(data.size()))) [[unlikely]]
    detail::side_counters::bump(state_->writer_counters.wakes);
  return true;
}

inline std::size_t writer::push(std::span<std::byte const> data, std::error_code& ec) noexcept {
  ec.clear();
  if (push_small(data)) [[likely]]
    return data.size();
  // An empty write to an open end succeeds even with the reader gone: Linux
  // pipe_write returns 0 before it looks for readers (no EPIPE, no SIGPIPE).
  if (!check_open(ec) || data.empty() || !check_reader(ec)) return 0;
  auto& ring = state_->bytes;
  std::size_t done = 0;
  // In quanta, so the reader copies out while we copy in. Unlike pop, a
  // short quantum does not end the loop: the reader frees room as it goes,
  // and taking it here beats a trip through write_blocking (measured at
  // 64 KiB and 1 MiB writes, docs/fast_path.md).
  do {
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
  if (push_small(data)) [[likely]]
    return;
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
  if (n == 0 && !ec && !data.empty()) {
    if (detail::peer_hung_up(*state_, detail::pipe_state::reader_closed)) return push(data, ec);
    ec = std::make_error_code(std::errc::resource_unavailable_try_again);
    if (ready_ != nullptr) [[unlikely]]
      refresh_ready(0);
  }
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
  // Partial progress is success (the bytes are in the pipe): only a call
  // that wrote nothing reports the timeout or the error. A reader that left
  // after some bytes is reported by the next call, as write(2) does.
  if (n + more != 0) ec.clear();
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
  auto span = state_->bytes.writable();
  if (span.empty() && detail::peer_hung_up(*state_, detail::pipe_state::reader_closed)) {
    check_reader(ec);
    return {};
  }
  if (span.empty() && ready_ != nullptr) [[unlikely]]
    refresh_ready(0);
  return span;
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
  return state_ != nullptr && (state_->closed_bits() & detail::pipe_state::reader_closed) != 0;
}

// ---- reader ---------------------------------------------------------------

inline void reader::free_line_view() noexcept {
  std::uint64_t const tail = state_->bytes.release(std::exchange(line_pending_, 0));
  if (state_->writer_wait.notify(tail)) [[unlikely]]
    detail::side_counters::bump(state_->reader_counters.wakes);
}

inline bool reader::check_open(std::error_code& ec) noexcept {
  if (state_ == nullptr || closed_) [[unlikely]] {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return false;
  }
  if (line_pending_ != 0) free_line_view();
  return true;
}

inline std::size_t reader::pop(std::span<std::byte> buffer) noexcept {
  auto& ring = state_->bytes;
  std::size_t done = 0;
  while (done < buffer.size()) {  // in quanta, so the writer refills while we copy out
    std::size_t const want = std::min(buffer.size() - done, ring.quantum());
    std::size_t const n = ring.pop(buffer.data() + done, want);
    if (n == 0) break;
    done += n;
    if (state_->writer_wait.notify(ring.release(n))) [[unlikely]]
      detail::side_counters::bump(state_->reader_counters.wakes);
    // Empty as of the head just read: looking again would load the line
    // the writer is storing to, for bytes the next call gets anyway.
    if (n < want) break;
  }
  return done;
}

inline reader::status reader::poll(std::error_code& ec) noexcept {
  if (state_->bytes.readable_size(1) != 0) return status::data;
  if ((state_->closed_bits() & detail::pipe_state::writer_closed) == 0) return status::empty;
  // The writer published its last bytes before it set the flag (or died):
  // look again.
  if (state_->bytes.readable_size(1) != 0) return status::data;
  ec = state_->writer_close_reason();
  return status::eof;
}

inline std::size_t reader::take(std::span<std::byte> buffer) noexcept {
  if (state_ == nullptr || closed_) [[unlikely]]
    return 0;
  if (line_pending_ != 0) [[unlikely]]
    free_line_view();
  return pop(buffer);
}

inline std::size_t reader::take_streaming(std::span<std::byte> buffer) noexcept {
  if (small_reads_ >= 2) [[unlikely]]
    detail::pause_for(detail::stream_gather);
  std::size_t const n = take(buffer);
  bool const small = n != 0 && n < buffer.size() && n < detail::stream_gather_below;
  small_reads_ = small ? std::min(small_reads_ + 1, 2) : 0;
  return n;
}

inline std::size_t reader::read_some(std::span<std::byte> buffer, std::error_code& ec) noexcept {
  ec.clear();
  if (std::size_t const n = take_streaming(buffer); n != 0) [[likely]]
    return n;
  if (!check_open(ec) || buffer.empty()) return 0;
  return read_blocking(buffer, 0, false, clock::time_point::max(), ec);
}

inline std::size_t reader::read_some(std::span<std::byte> buffer) {
  if (std::size_t const n = take_streaming(buffer); n != 0) [[likely]]
    return n;
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
  if (std::size_t const n = take(buffer); n != 0) [[likely]]
    return n;
  if (!check_open(ec) || buffer.empty()) return 0;
  // A shared pipe's writer may have died without a word: a try_ call that
  // would say "try again" asks its socket first (blocking calls learn it
  // from the poll they sleep in).
  if (poll(ec) == status::empty && !detail::peer_hung_up(*state_, detail::pipe_state::writer_closed)) {
    ec = std::make_error_code(std::errc::resource_unavailable_try_again);
    if (ready_ != nullptr) [[unlikely]]
      refresh_ready(1);
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
  if (std::size_t const n = take_streaming(buffer); n != 0) [[likely]]
    return n;
  if (!check_open(ec) || buffer.empty()) return 0;
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
                                      std::chrono::duration<Rep, Period> gather,
                                      std::error_code& ec) noexcept {
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
      if (detail::peer_hung_up(*state_, detail::pipe_state::writer_closed)) return try_peek(ec);
      ec = std::make_error_code(std::errc::resource_unavailable_try_again);
      if (ready_ != nullptr) [[unlikely]]
        refresh_ready(1);
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
  // Clamped: a shared pipe's head is written by another process.
  auto const used = static_cast<std::size_t>(ring.head_index().load(std::memory_order_acquire) - ring.tail());
  return std::min(used, ring.capacity()) - std::min(line_pending_, std::min(used, ring.capacity()));
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

// ---- messages (the rest is in src/message.cpp) --------------------------------

template <class Rep, class Period>
void writer::write_message_for(std::span<std::byte const> message,
                               std::chrono::duration<Rep, Period> timeout) {
  write_message_until(message, detail::deadline_after(timeout));
}

template <class Rep, class Period>
void writer::write_message_for(std::span<std::byte const> message, std::chrono::duration<Rep, Period> timeout,
                               std::error_code& ec) noexcept {
  write_message_until(message, detail::deadline_after(timeout), ec);
}

template <class Rep, class Period>
std::size_t reader::read_message_for(std::span<std::byte> buffer,
                                     std::chrono::duration<Rep, Period> timeout) {
  return read_message_until(buffer, detail::deadline_after(timeout));
}

template <class Rep, class Period>
std::size_t reader::read_message_for(std::span<std::byte> buffer, std::chrono::duration<Rep, Period> timeout,
                                     std::error_code& ec) noexcept {
  return read_message_until(buffer, detail::deadline_after(timeout), ec);
}

}  // namespace userpipe
