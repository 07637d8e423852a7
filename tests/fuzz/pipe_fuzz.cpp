// tests/fuzz/pipe_fuzz.cpp — one thread drives both ends of a userpipe with
// a program read from the fuzzer's input (writes and reads of any size,
// prepare/commit, peek/consume, try_ and timed calls, read_line,
// read_some_batched, closes on
// either side with or without an error, ends reset to default) and applies
// each operation to a reference model: a std::deque<std::byte> with the
// semantics pipe.hpp documents. Results, error codes and every byte must
// agree. Blocking calls are issued only when the reference says they do not
// block, so a wrong "would block" shows up as a libFuzzer timeout.
//
// Input: byte 0 picks the capacity (1 to 256 bytes) and, with bit 7, message
// mode; then each operation is an opcode byte (bit 7: use the throwing
// overload) and its arguments. Message mode drives the message calls
// (write_message, read_message, the views, try_ and timed forms) against a
// deque of messages that knows the frame layout (docs/parity.md).
#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <string>
#include <userpipe/pipe.hpp>
#include <vector>

#include "fuzz_input.hpp"

namespace {

using namespace userpipe_fuzz;
using namespace std::chrono_literals;
using std::errc;

std::error_code code(errc e) { return std::make_error_code(e); }

/// Runs f() (a throwing call); returns the error code it threw, if any.
template <class F>
std::error_code thrown(F&& f) {
  try {
    f();
  } catch (std::system_error const& e) {
    return e.code();
  }
  return {};
}

/// pipe.hpp's documented behaviour, one deque and four flags.
struct reference {
  std::size_t capacity;
  std::deque<std::byte> bytes;  // published, not consumed
  std::uint64_t head = 0;       // stream offset of the next byte written
  std::uint64_t tail = 0;       // stream offset of the next byte read
  bool writer_open = true, reader_open = true;
  bool writer_null = false, reader_null = false;  // assigned a default end
  std::error_code writer_reason, reader_reason;

  std::size_t used() const { return bytes.size(); }
  std::size_t free() const { return capacity - used(); }
  // A heap ring is not mirrored: spans stop at the end of the buffer.
  std::size_t contiguous_free() const { return std::min<std::size_t>(free(), capacity - head % capacity); }
  std::size_t contiguous_used() const { return std::min<std::size_t>(used(), capacity - tail % capacity); }

  /// The error every writing call reports before it moves a byte.
  std::error_code writer_error() const {
    if (!writer_open) return code(errc::bad_file_descriptor);
    if (!reader_open) return reader_reason ? reader_reason : code(errc::broken_pipe);
    return {};
  }
  /// A write of n bytes: as writer_error(), except that writing nothing
  /// never finds the reader gone (Linux pipe_write returns 0 first).
  std::error_code write_error(std::size_t n) const {
    return n == 0 && writer_open ? std::error_code{} : writer_error();
  }
  std::error_code reader_error() const {
    return reader_open ? std::error_code{} : code(errc::bad_file_descriptor);
  }

  void push(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) bytes.push_back(pattern(head + i));
    head += n;
  }
  /// Checks that `got` holds the next got.size() bytes, then consumes them.
  void pop(std::span<std::byte const> got) {
    FUZZ_EQ(got.size() <= used(), true);
    for (std::size_t i = 0; i < got.size(); ++i)
      FUZZ_EQ(static_cast<int>(got[i]), static_cast<int>(bytes[i]));
    bytes.erase(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(got.size()));
    tail += got.size();
  }
};

enum op : std::uint8_t {
  write_all,
  write_some,
  try_write_some,
  write_for_zero,
  prepare_commit,
  try_prepare_commit,
  commit_too_much,
  close_writer,
  query_writer,
  read_some,
  read_all,
  try_read_some,
  read_some_for_zero,
  read_line,
  peek_consume,
  try_peek,
  consume_too_much,
  close_reader,
  query_reader,
  read_some_batched,
  op_count
};

class harness {
 public:
  harness(input& in, std::size_t capacity) : in_(in), ref_{.capacity = capacity}, scratch_(4 * capacity + 8) {
    auto [r, w] = userpipe::make_pipe({.capacity = capacity});
    r_ = std::move(r);
    w_ = std::move(w);
    FUZZ_EQ(w_.capacity(), capacity);
  }

  void step() {
    std::uint8_t const code_byte = in_.byte();
    bool const throwing = code_byte & 0x80;
    switch (static_cast<op>((code_byte & 0x7f) % op_count)) {
      case write_all:
        return do_write_all(throwing);
      case write_some:
        return do_write_some(throwing);
      case try_write_some:
        return do_try_write_some(throwing);
      case write_for_zero:
        return do_write_for_zero(throwing);
      case prepare_commit:
        return do_prepare_commit(throwing);
      case try_prepare_commit:
        return do_try_prepare_commit();
      case commit_too_much:
        return do_commit_too_much(throwing);
      case close_writer:
        return do_close_writer();
      case query_writer:
        return do_query();
      case read_some:
        return do_read_some(throwing);
      case read_all:
        return do_read_all(throwing);
      case try_read_some:
        return do_try_read_some(throwing);
      case read_some_for_zero:
        return do_read_some_for_zero(throwing);
      case read_line:
        return do_read_line(throwing);
      case peek_consume:
        return do_peek_consume(throwing);
      case try_peek:
        return do_try_peek();
      case consume_too_much:
        return do_consume_too_much(throwing);
      case close_reader:
        return do_close_reader();
      case query_reader:
        return do_query();
      case read_some_batched:
        return do_read_some_batched(throwing);
      case op_count:
        break;
    }
  }

 private:
  /// The next n bytes of the stream, ready to write.
  std::span<std::byte const> outgoing(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) scratch_[i] = pattern(ref_.head + i);
    return std::span(scratch_).first(n);
  }
  std::span<std::byte> incoming(std::size_t n) { return std::span(scratch_).first(n); }
  std::size_t write_size() { return std::min(in_.size(2 * ref_.capacity), scratch_.size()); }

  void do_write_all(bool throwing) {
    std::size_t const n = write_size();
    std::error_code const want = ref_.write_error(n);
    if (!want && n > ref_.free()) return;  // would block
    auto data = outgoing(n);
    std::error_code ec;
    std::size_t got = 0;
    if (throwing) {
      ec = thrown([&] { w_.write(data); });
      got = ec ? 0 : n;
    } else {
      got = w_.write(data, ec);
    }
    FUZZ_EC(ec, want);
    FUZZ_EQ(got, want ? 0 : n);
    if (!want) ref_.push(n);
  }

  void do_write_some(bool throwing) {
    std::size_t const n = write_size();
    std::error_code const want = ref_.write_error(n);
    if (!want && n != 0 && ref_.free() == 0) return;  // would block
    auto data = outgoing(n);
    std::error_code ec;
    std::size_t got = 0;
    if (throwing)
      ec = thrown([&] { got = w_.write_some(data); });
    else
      got = w_.write_some(data, ec);
    FUZZ_EC(ec, want);
    FUZZ_EQ(got, want ? 0 : std::min(n, ref_.free()));
    ref_.push(got);
  }

  void do_try_write_some(bool throwing) {
    std::size_t const n = write_size();
    std::error_code want = ref_.write_error(n);
    std::size_t const fits = want ? 0 : std::min(n, ref_.free());
    if (!want && fits == 0 && n != 0) want = code(errc::resource_unavailable_try_again);
    auto data = outgoing(n);
    std::error_code ec;
    std::size_t got = 0;
    if (throwing)
      ec = thrown([&] { got = w_.try_write_some(data); });
    else
      got = w_.try_write_some(data, ec);
    FUZZ_EC(ec, want);
    FUZZ_EQ(got, fits);
    ref_.push(got);
  }

  void do_write_for_zero(bool throwing) {
    std::size_t const n = write_size();
    std::error_code want = ref_.write_error(n);
    std::size_t const fits = want ? 0 : std::min(n, ref_.free());
    if (!want && fits == 0 && n != 0) want = code(errc::timed_out);
    auto data = outgoing(n);
    std::error_code ec;
    std::size_t got = 0;
    if (throwing)
      ec = thrown([&] { got = w_.write_for(data, 0ms); });
    else
      got = w_.write_for(data, 0ms, ec);
    FUZZ_EC(ec, want);
    FUZZ_EQ(got, fits);
    ref_.push(got);
  }

  /// Fills k bytes of a prepared span (k from the input) and commits them.
  void fill_and_commit(std::span<std::byte> span) {
    std::size_t const k = std::min(in_.size(span.size()), span.size());
    for (std::size_t i = 0; i < k; ++i) span[i] = pattern(ref_.head + i);
    std::error_code ec;
    w_.commit(k, ec);
    FUZZ_EC(ec, std::error_code{});
    ref_.push(k);
  }

  void do_prepare_commit(bool throwing) {
    std::size_t const min_size = in_.size(ref_.capacity);
    std::error_code want = ref_.writer_error();
    if (!want && (min_size == 0 || min_size > ref_.capacity)) want = code(errc::invalid_argument);
    if (!want && ref_.free() < min_size) return;  // would block
    std::error_code ec;
    std::span<std::byte> span;
    if (throwing)
      ec = thrown([&] { span = w_.prepare(min_size); });
    else
      span = w_.prepare(min_size, ec);
    FUZZ_EC(ec, want);
    if (want) {
      FUZZ_EQ(span.size(), 0u);
      return;
    }
    // Never empty; the free bytes that are contiguous, which across the wrap
    // may be fewer than min_size.
    FUZZ_EQ(span.size(), ref_.contiguous_free());
    FUZZ_EQ(span.empty(), false);
    fill_and_commit(span);
  }

  void do_try_prepare_commit() {
    std::error_code const want = ref_.writer_error();
    std::error_code ec;
    auto span = w_.try_prepare(ec);
    FUZZ_EC(ec, want);
    FUZZ_EQ(span.size(), want ? 0 : ref_.contiguous_free());
    if (!want) fill_and_commit(span);
  }

  void do_commit_too_much(bool throwing) {
    // commit() does not look at the reader: publishing after the reader
    // closed is harmless. Only the size is checked.
    std::size_t const n = ref_.free() + 1 + in_.byte() % 4;
    std::error_code const want =
        ref_.writer_open ? code(errc::invalid_argument) : code(errc::bad_file_descriptor);
    std::error_code ec;
    if (throwing)
      ec = thrown([&] { w_.commit(n); });
    else
      w_.commit(n, ec);
    FUZZ_EC(ec, want);
    // commit(0) on an open end does nothing and succeeds.
    ec = code(errc::io_error);
    w_.commit(0, ec);
    FUZZ_EC(ec, ref_.writer_open ? std::error_code{} : code(errc::bad_file_descriptor));
  }

  void do_close_writer() {
    std::uint8_t const how = in_.byte();
    std::error_code const why = reason(how >> 2);
    switch (how & 3) {
      case 0:
        w_.close();
        break;
      case 1:
        w_.close(why);
        break;
      case 2:
        w_ = userpipe::writer{};
        break;  // destroying an end closes it
      case 3:
        w_.close(why);
        w_.close(code(errc::not_supported));  // the first close wins
        break;
    }
    if (ref_.writer_open) {
      ref_.writer_open = false;
      ref_.writer_reason = (how & 3) == 1 || (how & 3) == 3 ? why : std::error_code{};
    }
    if ((how & 3) == 2) ref_.writer_null = true;
  }

  void do_query() {
    FUZZ_EQ(w_.is_open(), ref_.writer_open);
    FUZZ_EQ(r_.is_open(), ref_.reader_open);
    FUZZ_EQ(w_.capacity(), ref_.writer_null ? 0 : ref_.capacity);
    FUZZ_EQ(r_.capacity(), ref_.reader_null ? 0 : ref_.capacity);
    FUZZ_EQ(w_.reader_closed(), !ref_.writer_null && !ref_.reader_open);
    FUZZ_EQ(r_.available(), ref_.reader_open ? ref_.used() : 0);
    if (!ref_.writer_null || !ref_.reader_null) {
      auto const s = ref_.writer_null ? r_.stats() : w_.stats();
      FUZZ_EQ(s.bytes_written, ref_.head);
      FUZZ_EQ(s.bytes_read, ref_.tail);
    }
  }

  // ---- reader ---------------------------------------------------------------

  std::size_t read_size() { return std::min(in_.size(2 * ref_.capacity), scratch_.size()); }

  void do_read_some(bool throwing) {
    std::size_t const n = read_size();
    std::error_code want = ref_.reader_error();
    if (!want && n != 0 && ref_.used() == 0) {
      if (ref_.writer_open) return;  // would block
      want = ref_.writer_reason;     // EOF: 0, or the writer's error every time
    }
    std::error_code ec;
    std::size_t got = 0;
    auto buf = incoming(n);
    if (throwing)
      ec = thrown([&] { got = r_.read_some(buf); });
    else
      got = r_.read_some(buf, ec);
    FUZZ_EC(ec, want);
    FUZZ_EQ(got, ref_.reader_open ? std::min(n, ref_.used()) : 0);
    ref_.pop(buf.first(got));
  }

  // With no gather time it waits for nothing more and reads like read_some.
  void do_read_some_batched(bool throwing) {
    std::size_t const n = read_size();
    std::size_t const min_size = in_.size(2 * ref_.capacity);
    std::error_code want = ref_.reader_error();
    if (!want && n != 0 && ref_.used() == 0) {
      if (ref_.writer_open) return;  // would block (after the gather, for one byte)
      want = ref_.writer_reason;
    }
    std::error_code ec;
    std::size_t got = 0;
    auto buf = incoming(n);
    if (throwing)
      ec = thrown([&] { got = r_.read_some_batched(buf, min_size, 0ms); });
    else
      got = r_.read_some_batched(buf, min_size, 0ms, ec);
    FUZZ_EC(ec, want);
    FUZZ_EQ(got, ref_.reader_open ? std::min(n, ref_.used()) : 0);
    ref_.pop(buf.first(got));
  }

  void do_read_all(bool throwing) {
    std::size_t const n = read_size();
    std::error_code want = ref_.reader_error();
    std::size_t const there = want ? 0 : std::min(n, ref_.used());
    if (!want && there < n) {
      if (ref_.writer_open) return;  // would block
      // Short only at EOF; an error close comes with the call that reads
      // nothing, so no byte is unaccounted for.
      if (there == 0) want = ref_.writer_reason;
    }
    std::error_code ec;
    std::size_t got = 0;
    auto buf = incoming(n);
    if (throwing)
      ec = thrown([&] { got = r_.read(buf); });
    else
      got = r_.read(buf, ec);
    FUZZ_EC(ec, want);
    FUZZ_EQ(got, there);
    ref_.pop(buf.first(got));
  }

  void do_try_read_some(bool throwing) {
    std::size_t const n = read_size();
    std::error_code want = ref_.reader_error();
    std::size_t const there = want ? 0 : std::min(n, ref_.used());
    if (!want && n != 0 && there == 0)
      want = ref_.writer_open ? code(errc::resource_unavailable_try_again) : ref_.writer_reason;
    std::error_code ec;
    std::size_t got = 0;
    auto buf = incoming(n);
    if (throwing)
      ec = thrown([&] { got = r_.try_read_some(buf); });
    else
      got = r_.try_read_some(buf, ec);
    FUZZ_EC(ec, want);
    FUZZ_EQ(got, there);
    ref_.pop(buf.first(got));
  }

  void do_read_some_for_zero(bool throwing) {
    std::size_t const n = read_size();
    std::error_code want = ref_.reader_error();
    std::size_t const there = want ? 0 : std::min(n, ref_.used());
    if (!want && n != 0 && there == 0) want = ref_.writer_open ? code(errc::timed_out) : ref_.writer_reason;
    std::error_code ec;
    std::size_t got = 0;
    auto buf = incoming(n);
    if (throwing)
      ec = thrown([&] { got = r_.read_some_for(buf, 0ms); });
    else
      got = r_.read_some_for(buf, 0ms, ec);
    FUZZ_EC(ec, want);
    FUZZ_EQ(got, there);
    ref_.pop(buf.first(got));
  }

  void do_read_line(bool throwing) {
    char const delim = static_cast<char>(in_.byte());
    std::error_code want = ref_.reader_error();
    auto const hit = std::find(ref_.bytes.begin(), ref_.bytes.end(), static_cast<std::byte>(delim));
    bool const found = hit != ref_.bytes.end();
    if (!want && !found && ref_.writer_open) return;  // would block
    std::size_t const length = want ? 0 : static_cast<std::size_t>(hit - ref_.bytes.begin());
    bool expect = true;
    if (!want && !found) {
      want = ref_.writer_reason;
      expect = !want && length != 0;  // a last line without delimiter is a line
    }
    if (want) expect = false;
    line_.assign(3, 'x');  // replaced, never appended to
    std::error_code ec;
    bool got = false;
    if (throwing)
      ec = thrown([&] { got = r_.read_line(line_, delim); });
    else
      got = r_.read_line(line_, delim, ec);
    FUZZ_EC(ec, want);
    FUZZ_EQ(got, expect);
    FUZZ_EQ(line_.size(), length);
    ref_.pop(std::as_bytes(std::span(line_)));
    if (found && ref_.reader_open) ref_.pop(std::span(&*ref_.bytes.begin(), 1));  // the delimiter
  }

  void do_peek_consume(bool throwing) {
    std::error_code want = ref_.reader_error();
    if (!want && ref_.used() == 0) {
      if (ref_.writer_open) return;  // would block
      want = ref_.writer_reason;
    }
    std::error_code ec;
    std::span<std::byte const> span;
    if (throwing)
      ec = thrown([&] { span = r_.peek(); });
    else
      span = r_.peek(ec);
    FUZZ_EC(ec, want);
    // Empty means EOF; otherwise every contiguous readable byte.
    FUZZ_EQ(span.size(), ref_.reader_open ? ref_.contiguous_used() : 0);
    consume_some(span);
  }

  void consume_some(std::span<std::byte const> span) {
    std::size_t const k = std::min(in_.size(span.size()), span.size());
    std::vector<std::byte> const copy(span.begin(), span.begin() + static_cast<std::ptrdiff_t>(k));
    std::error_code ec;
    r_.consume(k, ec);
    FUZZ_EC(ec, ref_.reader_error());
    ref_.pop(copy);
  }

  void do_try_peek() {
    std::error_code want = ref_.reader_error();
    if (!want && ref_.used() == 0)
      want = ref_.writer_open ? code(errc::resource_unavailable_try_again) : ref_.writer_reason;
    std::error_code ec;
    auto span = r_.try_peek(ec);
    FUZZ_EC(ec, want);
    FUZZ_EQ(span.size(), ref_.reader_open ? ref_.contiguous_used() : 0);
    if (!span.empty()) consume_some(span);
  }

  void do_consume_too_much(bool throwing) {
    std::size_t const n = ref_.used() + 1 + in_.byte() % 4;
    std::error_code const want =
        ref_.reader_open ? code(errc::invalid_argument) : code(errc::bad_file_descriptor);
    std::error_code ec;
    if (throwing)
      ec = thrown([&] { r_.consume(n); });
    else
      r_.consume(n, ec);
    FUZZ_EC(ec, want);
  }

  void do_close_reader() {
    std::uint8_t const how = in_.byte();
    std::error_code const why = reason(how >> 2);
    switch (how & 3) {
      case 0:
        r_.close();
        break;
      case 1:
        r_.close(why);
        break;
      case 2:
        r_ = userpipe::reader{};
        break;
      case 3:
        r_.close(why);
        r_.close(code(errc::not_supported));
        break;
    }
    if (ref_.reader_open) {
      ref_.reader_open = false;
      ref_.reader_reason = (how & 3) == 1 || (how & 3) == 3 ? why : std::error_code{};
    }
    if ((how & 3) == 2) ref_.reader_null = true;
  }

  input& in_;
  reference ref_;
  std::vector<std::byte> scratch_;
  std::string line_;
  userpipe::reader r_;
  userpipe::writer w_;
};

// ---- message mode -------------------------------------------------------------

/// The message calls' documented behaviour: whole messages, each in a frame
/// of 8 bytes of header and the payload padded to a multiple of 8.
struct message_reference {
  std::size_t capacity;
  std::deque<std::vector<std::byte>> messages;  // published, not read
  std::uint64_t head = 0, tail = 0;             // frame bytes written, freed
  std::size_t view_framed = 0;                  // a view still held in the ring
  std::uint64_t sent = 0;                       // messages written, for their contents
  bool writer_open = true, reader_open = true;
  std::error_code writer_reason, reader_reason;

  static std::size_t framed(std::size_t n) { return 8 + ((n + 7) & ~std::size_t{7}); }
  std::size_t max_message() const { return capacity >= 16 ? capacity - 8 : 0; }
  std::size_t free() const { return capacity - static_cast<std::size_t>(head - tail); }
  std::error_code writer_error() const {
    if (!writer_open) return code(errc::bad_file_descriptor);
    if (!reader_open) return reader_reason ? reader_reason : code(errc::broken_pipe);
    return {};
  }
  /// An empty message sends nothing and never finds the reader gone.
  std::error_code write_error(std::size_t n) const {
    return n == 0 && writer_open ? std::error_code{} : writer_error();
  }
  /// Every reader call on an open reader frees the last view first.
  void reader_call() {
    if (reader_open) tail += std::exchange(view_framed, 0);
  }
  bool straddles(std::size_t n) const { return tail % capacity + 8 + n > capacity; }
};

class message_harness {
 public:
  message_harness(input& in, std::size_t capacity)
      : in_(in), ref_{.capacity = capacity}, scratch_(capacity + 8) {
    auto [r, w] = userpipe::make_pipe({.capacity = capacity});
    r_ = std::move(r);
    w_ = std::move(w);
    FUZZ_EQ(w_.max_message_size(), ref_.max_message());
  }

  void step() {
    std::uint8_t const code_byte = in_.byte();
    bool const throwing = code_byte & 0x80;
    switch ((code_byte & 0x7f) % 11) {
      case 0:
        return do_write(throwing, 0);
      case 1:
        return do_write(throwing, 1);
      case 2:
        return do_write(throwing, 2);
      case 3:
        return do_read(throwing, 0);
      case 4:
        return do_read(throwing, 1);
      case 5:
        return do_read(throwing, 2);
      case 6:
        return do_view(false);
      case 7:
        return do_view(true);
      case 8:
        return do_close_writer();
      case 9:
        return do_close_reader();
      case 10:
        return do_query();
    }
  }

 private:
  std::span<std::byte const> outgoing(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) scratch_[i] = pattern(ref_.sent * 977 + i);
    return std::span(scratch_).first(n);
  }

  /// how: 0 blocking, 1 try_, 2 _for(0ms).
  void do_write(bool throwing, int how) {
    std::size_t const n = std::min(in_.size(ref_.capacity + 8), scratch_.size());
    std::error_code want = ref_.write_error(n);
    if (!want && n > ref_.max_message()) want = code(errc::message_size);
    bool const fits = n == 0 || ref_.framed(n) <= ref_.free();
    if (!want && !fits) {
      if (how == 0) return;  // would block
      want = code(how == 1 ? errc::resource_unavailable_try_again : errc::timed_out);
    }
    auto data = outgoing(n);
    std::error_code ec;
    if (throwing) {
      ec = thrown([&] {
        if (how == 0)
          w_.write_message(data);
        else if (how == 1)
          w_.try_write_message(data);
        else
          w_.write_message_for(data, 0ms);
      });
    } else if (how == 0) {
      w_.write_message(data, ec);
    } else if (how == 1) {
      w_.try_write_message(data, ec);
    } else {
      w_.write_message_for(data, 0ms, ec);
    }
    FUZZ_EC(ec, want);
    if (!want && n != 0) {
      ref_.messages.emplace_back(data.begin(), data.end());
      ref_.head += ref_.framed(n);
      ++ref_.sent;
    }
  }

  /// What a read finds: the next message, EOF (with the writer's reason),
  /// or nothing yet. False: a blocking call would block.
  std::error_code read_outcome(int how, bool& would_block) {
    would_block = false;
    if (!ref_.reader_open) return code(errc::bad_file_descriptor);
    if (!ref_.messages.empty()) return {};
    if (!ref_.writer_open) return ref_.writer_reason;
    would_block = true;
    return code(how == 1 ? errc::resource_unavailable_try_again : errc::timed_out);
  }

  void pop_checked(std::span<std::byte const> got) {
    auto const& m = ref_.messages.front();
    FUZZ_EQ(got.size(), m.size());
    FUZZ_EQ(std::memcmp(got.data(), m.data(), m.size()), 0);
  }

  void do_read(bool throwing, int how) {
    std::size_t const n = std::min(in_.size(ref_.capacity), scratch_.size());
    bool would_block;
    std::error_code want = read_outcome(how, would_block);
    if (would_block && how == 0) return;
    ref_.reader_call();  // the call below frees a view still held
    std::size_t expect = 0;
    bool take = false;
    if (!want && !ref_.messages.empty()) {
      expect = ref_.messages.front().size();
      if (expect > n)
        want = code(errc::message_size);  // left unread, size returned
      else
        take = true;
    }
    auto buf = std::span(scratch_).first(n);
    std::error_code ec;
    std::size_t got = 0;
    if (throwing) {
      ec = thrown([&] {
        if (how == 0)
          got = r_.read_message(buf);
        else if (how == 1)
          got = r_.try_read_message(buf);
        else
          got = r_.read_message_for(buf, 0ms);
      });
      if (ec) got = want == code(errc::message_size) ? expect : 0;
    } else if (how == 0) {
      got = r_.read_message(buf, ec);
    } else if (how == 1) {
      got = r_.try_read_message(buf, ec);
    } else {
      got = r_.read_message_for(buf, 0ms, ec);
    }
    FUZZ_EC(ec, want);
    FUZZ_EQ(got, expect);
    if (take) {
      pop_checked(buf.first(got));
      ref_.tail += ref_.framed(got);
      ref_.messages.pop_front();
    }
  }

  void do_view(bool try_form) {
    bool const release_after = in_.byte() & 1;
    bool would_block;
    std::error_code const want = read_outcome(1, would_block);
    if (would_block && !try_form) return;
    ref_.reader_call();
    std::error_code ec;
    std::span<std::byte const> view;
    bool const got = try_form ? r_.try_read_message_view(view, ec) : r_.read_message_view(view, ec);
    FUZZ_EC(ec, want);
    FUZZ_EQ(got, ref_.reader_open && !ref_.messages.empty());  // false at EOF too
    if (!got) return;
    pop_checked(view);
    std::size_t const framed = ref_.framed(view.size());
    if (ref_.straddles(view.size()))
      ref_.tail += framed;  // copied out and freed at once
    else
      ref_.view_framed = framed;
    ref_.messages.pop_front();
    if (release_after) {
      r_.release_message();
      ref_.reader_call();
    }
  }

  void do_close_writer() {
    std::uint8_t const how = in_.byte();
    std::error_code const why = reason(how >> 2);
    if (how & 1)
      w_.close(why);
    else
      w_.close();
    if (ref_.writer_open) {
      ref_.writer_open = false;
      ref_.writer_reason = (how & 1) ? why : std::error_code{};
    }
  }

  void do_close_reader() {
    std::uint8_t const how = in_.byte();
    std::error_code const why = reason(how >> 2);
    if (how & 1)
      r_.close(why);
    else
      r_.close();
    if (ref_.reader_open) {
      ref_.reader_open = false;
      ref_.reader_reason = (how & 1) ? why : std::error_code{};
    }
  }

  void do_query() {
    FUZZ_EQ(r_.available(),
            ref_.reader_open ? static_cast<std::size_t>(ref_.head - ref_.tail) - ref_.view_framed : 0);
    auto const s = w_.stats();
    FUZZ_EQ(s.bytes_written, ref_.head);
    if (ref_.reader_open) FUZZ_EQ(s.bytes_read, ref_.tail);
  }

  input& in_;
  message_reference ref_;
  std::vector<std::byte> scratch_;
  userpipe::reader r_;
  userpipe::writer w_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  input in(data, size);
  std::uint8_t const first = in.byte();
  std::size_t const capacity = std::size_t{1} << ((first & 0x7f) % 9);
  // Bounded: a short input cannot loop, a long one runs one op per byte or so.
  if (first & 0x80) {
    message_harness h(in, capacity);
    for (int steps = 0; !in.empty() && steps < 4096; ++steps) h.step();
    return 0;
  }
  harness h(in, capacity);
  for (int steps = 0; !in.empty() && steps < 4096; ++steps) h.step();
  return 0;
}
