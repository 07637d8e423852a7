// Message mode (packets): write_message / read_message and the view pair.
// See "Messages" in userpipe/pipe.hpp and docs/parity.md.
//
// A message travels as a frame: an 8-byte header (a tag in the top byte,
// the length below), the payload, padding to a multiple of 8. Frames start
// at multiples of 8 and the capacity is a power of two, so a header never
// straddles the ring's end; a payload may, and is then copied in two parts.
// The writer publishes a frame with one store of the ring's head, or, when
// it straddles, with two in a row (header and first part, then the rest);
// a reader treats a frame it sees only in part as not there yet, so either
// way a message is read whole or not at all.
#include <algorithm>
#include <cstring>
#include <new>

#include "userpipe/pipe.hpp"

namespace userpipe {

namespace {

constexpr std::uint64_t header_tag = std::uint64_t{0xb5} << 56;
constexpr std::uint64_t length_mask = (std::uint64_t{1} << 56) - 1;
constexpr std::size_t header_size = 8;

constexpr std::size_t frame_size(std::size_t length) noexcept {
  return header_size + ((length + 7) & ~std::size_t{7});
}

std::error_code code(std::errc e) noexcept { return std::make_error_code(e); }

}  // namespace

// ---- writer -----------------------------------------------------------------

std::size_t writer::max_message_size() const noexcept {
  std::size_t const cap = capacity();
  return cap >= 2 * header_size ? cap - header_size : 0;
}

bool writer::push_message(std::span<std::byte const> message, std::error_code& ec) noexcept {
  ec.clear();
  if (!check_open(ec)) return false;
  if (message.empty()) return true;  // like a packet pipe: an empty write sends nothing, reader or not
  if (!check_reader(ec)) return false;
  if (message.size() > max_message_size()) {
    ec = code(std::errc::message_size);
    return false;
  }
  auto& ring = state_->bytes;
  if (ring.head() % header_size != 0) {  // bytes written with the stream calls before
    ec = code(std::errc::invalid_argument);
    return false;
  }
  std::size_t const framed = frame_size(message.size());
  if (ring.free_space(framed) < framed) return false;
  auto span = ring.writable(framed);
  std::uint64_t const header = header_tag | message.size();
  std::memcpy(span.data(), &header, header_size);
  std::size_t const first = std::min(message.size(), span.size() - header_size);
  std::memcpy(span.data() + header_size, message.data(), first);
  std::uint64_t head;
  if (first < message.size()) {
    // Straddles the ring's end: no wake for the first part, the reader
    // could not take the message yet anyway.
    ring.publish(span.size());
    auto rest = ring.writable(framed - span.size());
    std::memcpy(rest.data(), message.data() + first, message.size() - first);
    head = ring.publish(framed - span.size());
  } else {
    head = ring.publish(framed);
  }
  if (state_->reader_wait.notify(head)) [[unlikely]]
    detail::side_counters::bump(state_->writer_counters.wakes);
  return true;
}

void writer::write_message_until(std::span<std::byte const> message, clock::time_point deadline,
                                 std::error_code& ec) noexcept {
  while (!push_message(message, ec) && !ec) {
    if (!wait_for_room(frame_size(message.size()), deadline, ec)) return;
  }
}

void writer::write_message_until(std::span<std::byte const> message, clock::time_point deadline) {
  std::error_code ec;
  write_message_until(message, deadline, ec);
  detail::throw_if(ec, "userpipe::writer::write_message");
}

void writer::write_message(std::span<std::byte const> message, std::error_code& ec) noexcept {
  write_message_until(message, clock::time_point::max(), ec);
}

void writer::write_message(std::span<std::byte const> message) {
  write_message_until(message, clock::time_point::max());
}

void writer::try_write_message(std::span<std::byte const> message, std::error_code& ec) noexcept {
  if (push_message(message, ec) || ec) return;
  if (detail::peer_hung_up(*state_, detail::pipe_state::reader_closed) && (push_message(message, ec) || ec))
    return;
  ec = code(std::errc::resource_unavailable_try_again);
  if (ready_ != nullptr)
    refresh_ready(std::max(frame_size(message.size()), std::min<std::size_t>(4096, capacity())));
}

void writer::try_write_message(std::span<std::byte const> message) {
  std::error_code ec;
  try_write_message(message, ec);
  detail::throw_if(ec, "userpipe::writer::try_write_message");
}

// ---- reader -----------------------------------------------------------------

reader::message_status reader::next_message(message_frame& frame, std::error_code& ec) noexcept {
  switch (poll(ec)) {
    case status::empty:
      return message_status::empty;
    case status::eof:
      return message_status::eof;
    case status::data:
      break;
  }
  auto& ring = state_->bytes;
  auto const span = ring.readable(header_size);
  std::uint64_t header = 0;
  if (ring.tail() % header_size != 0 || span.size() < header_size) {
    ec = code(std::errc::bad_message);  // not a frame: stream bytes in a message read
    return message_status::error;
  }
  std::memcpy(&header, span.data(), header_size);
  std::size_t const length = static_cast<std::size_t>(header & length_mask);
  frame.framed = frame_size(length);
  if ((header & ~length_mask) != header_tag || frame.framed > capacity()) {
    ec = code(std::errc::bad_message);
    return message_status::error;
  }
  if (ring.readable_size(frame.framed) < frame.framed) return message_status::partial;
  frame.length = length;
  frame.first = {span.data() + header_size, std::min(length, span.size() - header_size)};
  return message_status::ready;
}

void reader::free_bytes(std::size_t n) noexcept {
  std::uint64_t const tail = state_->bytes.release(n);
  if (state_->writer_wait.notify(tail)) [[unlikely]]
    detail::side_counters::bump(state_->reader_counters.wakes);
}

void reader::take_message(message_frame const& frame, std::byte* out) noexcept {
  std::memcpy(out, frame.first.data(), frame.first.size());
  if (frame.first.size() == frame.length) {
    free_bytes(frame.framed);
    return;
  }
  // Straddles the ring's end: free the first part, the rest is then at the
  // ring's start.
  std::size_t const first_framed = header_size + frame.first.size();
  free_bytes(first_framed);
  auto const rest = state_->bytes.readable(frame.framed - first_framed);
  std::memcpy(out + frame.first.size(), rest.data(), frame.length - frame.first.size());
  free_bytes(frame.framed - first_framed);
}

template <class Take>
auto reader::message_loop(clock::time_point deadline, bool blocking, std::error_code& ec, Take take) noexcept
    -> decltype(take(std::declval<message_frame const&>())) {
  using result = decltype(take(std::declval<message_frame const&>()));
  ec.clear();
  if (!check_open(ec)) return result{};
  for (bool last = false;;) {
    message_frame frame;
    std::size_t want = 1;
    switch (next_message(frame, ec)) {
      case message_status::ready:
        return take(frame);
      case message_status::eof:
      case message_status::error:
        return result{};
      case message_status::partial:
        want = frame.framed;
        break;
      case message_status::empty:
        break;
    }
    if (!blocking) {
      // A shared pipe's writer may have died without a word: ask once.
      if (!last && detail::peer_hung_up(*state_, detail::pipe_state::writer_closed)) {
        last = true;
        continue;
      }
      ec = code(std::errc::resource_unavailable_try_again);
      if (ready_ != nullptr) refresh_ready(want);
      return result{};
    }
    if (last) {
      ec = code(std::errc::timed_out);
      return result{};
    }
    // A timed-out wait gets one more look, then reports timed_out.
    if (!wait_for_data(want, deadline)) last = true;
  }
}

std::size_t reader::read_message_until(std::span<std::byte> buffer, clock::time_point deadline, bool blocking,
                                       std::error_code& ec) noexcept {
  return message_loop(deadline, blocking, ec, [&](message_frame const& frame) -> std::size_t {
    if (frame.length > buffer.size()) {
      ec = code(std::errc::message_size);
      return frame.length;  // left unread; the size tells how much room it needs
    }
    take_message(frame, buffer.data());
    return frame.length;
  });
}

std::size_t reader::read_message(std::span<std::byte> buffer, std::error_code& ec) noexcept {
  return read_message_until(buffer, clock::time_point::max(), true, ec);
}

std::size_t reader::read_message(std::span<std::byte> buffer) {
  std::error_code ec;
  std::size_t const n = read_message(buffer, ec);
  detail::throw_if(ec, "userpipe::reader::read_message");
  return n;
}

std::size_t reader::try_read_message(std::span<std::byte> buffer, std::error_code& ec) noexcept {
  return read_message_until(buffer, clock::time_point::max(), false, ec);
}

std::size_t reader::try_read_message(std::span<std::byte> buffer) {
  std::error_code ec;
  std::size_t const n = try_read_message(buffer, ec);
  detail::throw_if(ec, "userpipe::reader::try_read_message");
  return n;
}

std::size_t reader::read_message_until(std::span<std::byte> buffer, clock::time_point deadline,
                                       std::error_code& ec) noexcept {
  return read_message_until(buffer, deadline, true, ec);
}

std::size_t reader::read_message_until(std::span<std::byte> buffer, clock::time_point deadline) {
  std::error_code ec;
  std::size_t const n = read_message_until(buffer, deadline, ec);
  detail::throw_if(ec, "userpipe::reader::read_message_until");
  return n;
}

bool reader::read_message_view_until(std::span<std::byte const>& message, clock::time_point deadline,
                                     bool blocking, std::error_code& ec) noexcept {
  message = {};
  return message_loop(deadline, blocking, ec, [&](message_frame const& frame) -> bool {
    if (frame.first.size() == frame.length) {  // contiguous: leave it in the ring until the next call
      message = frame.first;
      line_pending_ = frame.framed;
      return true;
    }
    try {
      line_copy_.resize(frame.length);
    } catch (std::bad_alloc const&) {
      ec = code(std::errc::not_enough_memory);
      return false;
    }
    take_message(frame, reinterpret_cast<std::byte*>(line_copy_.data()));
    message = {reinterpret_cast<std::byte const*>(line_copy_.data()), frame.length};
    return true;
  });
}

bool reader::read_message_view(std::span<std::byte const>& message, std::error_code& ec) noexcept {
  return read_message_view_until(message, clock::time_point::max(), true, ec);
}

bool reader::read_message_view(std::span<std::byte const>& message) {
  std::error_code ec;
  bool const got = read_message_view(message, ec);
  detail::throw_if(ec, "userpipe::reader::read_message_view");
  return got;
}

bool reader::try_read_message_view(std::span<std::byte const>& message, std::error_code& ec) noexcept {
  return read_message_view_until(message, clock::time_point::max(), false, ec);
}

void reader::release_message() noexcept {
  if (state_ != nullptr && !closed_ && line_pending_ != 0) free_line_view();
}

}  // namespace userpipe
