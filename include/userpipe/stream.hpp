// userpipe/stream.hpp — std::ostream and std::istream over a pipe's ends.
//
// Anything that writes to a std::ostream can write into a pipe, anything
// that reads a std::istream can read from one, with no buffer of the
// stream's own: the ostream's put area *is* the span writer.prepare()
// returned, so `os << x` formats straight into the ring, and the istream's
// get area *is* the span reader.peek() returned, so std::getline and
// operator>> parse straight out of it.
//
//   auto [r, w] = userpipe::make_pipe();
//   std::jthread producer([&] { userpipe::ostream os(std::move(w)); os << 42 << '\n'; });
//   userpipe::istream is(std::move(r));
//   int x; is >> x;
//
// Owning or borrowing: a stream made from `writer&&` / `reader&&` owns the
// end and closes it when destroyed (the reader then sees EOF after the
// last byte, like a file stream closing its file). A stream made from
// `writer&` / `reader&` borrows the end, which must outlive it, and leaves
// it open. Streams are neither copyable nor movable (the std::streambuf
// points into the ring).
//
// When bytes move: the ostream publishes (commits) what was formatted on
// flush() / std::endl / std::flush, when the put area is full, and when it
// is destroyed; not on '\n' (that is what makes it fast). The istream frees
// what it has read from the ring when it needs more (underflow), on sync()
// and when it is destroyed. To use a borrowed end directly again, flush the
// ostream / sync() the istream first: both then hold nothing of the ring.
//
// Errors: an ostream whose reader has closed, or an istream whose writer
// closed with an error, sets badbit; with exceptions(badbit) enabled the
// std::system_error carrying the pipe's code (broken_pipe, or the writer's
// reason) propagates. error() tells the code either way. Nothing hangs on a
// closed peer: a blocked stream wakes and fails. End-of-file is eofbit, as
// for any stream.
//
// Threads: a stream is its end: one thread at a time. The ostream and the
// istream of one pipe may live on different threads.
#pragma once

#include <algorithm>
#include <charconv>
#include <concepts>
#include <cstddef>
#include <istream>
#include <limits>
#include <locale>
#include <ostream>
#include <streambuf>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

#include "userpipe/pipe.hpp"

namespace userpipe {

namespace detail {
/// How much of the ring a stream's put or get area covers at most. Not all
/// of it: the ostream publishes only when its area is full and the istream
/// frees only when its area is used up, so areas as large as the ring make
/// the two threads take turns (one fills the whole ring while the other
/// waits, then the reverse) instead of working at the same time. A quarter
/// of the ring, at most 16 KiB (which stays in L1/L2), lets them overlap.
inline std::size_t stream_area(std::size_t capacity) noexcept {
  return std::clamp<std::size_t>(capacity / 4, 1, 16384);
}
}  // namespace detail

/// The std::streambuf of userpipe::ostream: its put area is prepared ring
/// space. Usable on its own with any std::ostream.
class writer_buf : public std::streambuf {
 public:
  explicit writer_buf(writer& w) noexcept : end_(&w) {}
  explicit writer_buf(writer&& w) noexcept : owned_(std::move(w)), end_(&owned_) {}
  writer_buf(writer_buf const&) = delete;
  writer_buf& operator=(writer_buf const&) = delete;
  /// Commits what was formatted; closes the end if it is owned. Never throws.
  ~writer_buf() override {
    std::error_code ec;
    publish(ec);
  }

  writer& pipe_end() noexcept { return *end_; }
  /// The pipe error that made the last operation fail (clear if none).
  std::error_code error() const noexcept { return error_; }

  /// Commits what was formatted and closes the end (owned or borrowed): the
  /// reader gets EOF after the last byte. Never throws.
  void close() noexcept {
    std::error_code ec;
    publish(ec);
    end_->close();
  }

 protected:
  /// The put area is full: publish it and prepare the next one.
  int_type overflow(int_type c) override {
    std::error_code ec;
    if (publish(ec) && prepare_area(ec)) {
      if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
      *pptr() = traits_type::to_char_type(c);
      pbump(1);
      return c;
    }
    fail(ec, "userpipe::ostream");
  }

  int sync() override {
    std::error_code ec;
    if (!publish(ec)) fail(ec, "userpipe::ostream: flush");
    return 0;
  }

  std::streamsize xsputn(char_type const* s, std::streamsize n) override {
    std::error_code ec;
    if (n >= direct_write) {
      // Large writes go to the ring directly, in as few steps as it
      // allows, instead of one put area at a time.
      if (!publish(ec)) fail(ec, "userpipe::ostream");
      end_->write(std::string_view(s, static_cast<std::size_t>(n)), ec);
      if (ec) fail(ec, "userpipe::ostream");
      return n;
    }
    for (std::streamsize done = 0; done < n;) {
      auto const room = static_cast<std::streamsize>(epptr() - pptr());
      if (room == 0) {
        if (!publish(ec) || !prepare_area(ec)) fail(ec, "userpipe::ostream");
        continue;
      }
      auto const k = std::min(room, n - done);
      traits_type::copy(pptr(), s + done, static_cast<std::size_t>(k));
      pbump(static_cast<int>(k));
      done += k;
    }
    return n;
  }

 private:
  friend class ostream;

  static constexpr std::streamsize direct_write = 16384;

  /// Commits the put area and drops it, so the end holds no prepared span.
  /// Bytes committed after the reader closed are lost, as in a kernel pipe:
  /// say so with its error.
  bool publish(std::error_code& ec) noexcept {
    ec.clear();
    if (pbase() != nullptr) {
      auto const n = static_cast<std::size_t>(pptr() - pbase());
      setp(nullptr, nullptr);
      end_->commit(n, ec);
      if (!ec && n != 0 && end_->reader_closed()) end_->try_prepare(ec);
    }
    return !ec;
  }

  bool prepare_area(std::error_code& ec) noexcept {
    // Ask for a useful amount, so a full pipe does not give 1-byte areas
    // (one commit and one wake per byte), but no more than the ring holds.
    std::size_t const want = detail::stream_area(end_->capacity());
    auto span = end_->prepare(want, ec);
    if (ec) return false;
    auto* p = reinterpret_cast<char*>(span.data());
    setp(p, p + std::min(span.size(), want));
    return true;
  }

  /// Records the error and throws it: the stream catches it, sets badbit,
  /// and rethrows it only if the user enabled exceptions(badbit).
  [[noreturn]] void fail(std::error_code ec, char const* what) {
    error_ = ec;
    throw std::system_error(ec, what);
  }

  writer owned_;
  writer* end_;
  std::error_code error_;
};

/// The std::streambuf of userpipe::istream: its get area is the readable
/// span of the ring. Usable on its own with any std::istream.
class reader_buf : public std::streambuf {
 public:
  explicit reader_buf(reader& r) noexcept : end_(&r) {}
  explicit reader_buf(reader&& r) noexcept : owned_(std::move(r)), end_(&owned_) {}
  reader_buf(reader_buf const&) = delete;
  reader_buf& operator=(reader_buf const&) = delete;
  /// Frees what was read (a borrowed end continues after it); closes the
  /// end if it is owned. Never throws.
  ~reader_buf() override {
    std::error_code ec;
    consume_get_area(ec);
  }

  reader& pipe_end() noexcept { return *end_; }
  std::error_code error() const noexcept { return error_; }

 protected:
  /// The get area is used up: free it and wait for more (blocks).
  int_type underflow() override {
    std::error_code ec;
    if (consume_get_area(ec)) {
      auto span = end_->peek(ec);
      if (!ec) {
        if (span.empty()) return traits_type::eof();
        auto* p = const_cast<char*>(reinterpret_cast<char const*>(span.data()));
        setg(p, p, p + std::min(span.size(), detail::stream_area(end_->capacity())));
        return traits_type::to_int_type(*p);
      }
    }
    error_ = ec;
    throw std::system_error(ec, "userpipe::istream");
  }

  /// Frees what was read and drops the get area; a borrowed end can then
  /// be used directly.
  int sync() override {
    std::error_code ec;
    if (!consume_get_area(ec)) {
      error_ = ec;
      return -1;
    }
    return 0;
  }

  /// Bytes readable without blocking, for in_avail() and readsome().
  std::streamsize showmanyc() override {
    std::size_t const n = end_->available() - static_cast<std::size_t>(gptr() - eback());
    return n == 0 ? 0 : static_cast<std::streamsize>(n);
  }

 private:
  bool consume_get_area(std::error_code& ec) noexcept {
    ec.clear();
    if (eback() != nullptr) {
      auto const n = static_cast<std::size_t>(gptr() - eback());
      setg(nullptr, nullptr, nullptr);
      end_->consume(n, ec);
    }
    return !ec;
  }

  reader owned_;
  reader* end_;
  std::error_code error_;
};

namespace detail {
template <class T>
concept stream_integer =
    std::integral<T> && !std::same_as<T, bool> && !std::same_as<T, char> && !std::same_as<T, signed char> &&
    !std::same_as<T, unsigned char> && !std::same_as<T, wchar_t> && !std::same_as<T, char8_t> &&
    !std::same_as<T, char16_t> && !std::same_as<T, char32_t>;
template <class T>
concept stream_text =
    std::same_as<T, std::string> || std::same_as<T, std::string_view> || std::same_as < std::decay_t<T>,
char const* > || std::same_as<std::decay_t<T>, char*>;
}  // namespace detail

/// A std::ostream writing into a pipe. See the top of this header.
///
/// Integers, chars and strings inserted into a userpipe::ostream& (not
/// through a plain std::ostream& to it) skip std::num_put and the sentry:
/// integers are formatted by std::to_chars straight into the ring, text is
/// copied straight into it, and the chain `os << i << '\n'` keeps that type.
/// This happens only while the formatting is the default (decimal, no
/// width, no showpos, the classic locale, no tie); otherwise, or through a
/// std::ostream&, the standard inserters run. The bytes are identical.
class ostream : public std::ostream {
 public:
  /// Borrows `w`, which must outlive the stream. Does not block or throw.
  explicit ostream(writer& w) : std::ostream(nullptr), buf_(w) { init(); }
  /// Owns `w`: the destructor closes it.
  explicit ostream(writer&& w) : std::ostream(nullptr), buf_(std::move(w)) { init(); }
  /// Publishes what was formatted (errors are dropped: flush() first to
  /// see them); closes an owned end.
  ~ostream() override = default;

  writer_buf* rdbuf() noexcept { return &buf_; }
  writer& pipe_end() noexcept { return buf_.pipe_end(); }
  /// The pipe error behind badbit, if any.
  std::error_code error() const noexcept { return buf_.error(); }
  /// Flushes and closes the end: the reader gets EOF after the last byte.
  void close() {
    try {
      flush();
    } catch (...) {  // exceptions(badbit): still close, then report
      buf_.close();
      throw;
    }
    buf_.close();
  }

  template <detail::stream_integer T>
  friend ostream& operator<<(ostream& os, T v) {
    return os.insert_integer(v);
  }
  // Templates, so that nothing converts to them: `os << 0.5` must not
  // find a char overload.
  template <std::same_as<char> T>
  friend ostream& operator<<(ostream& os, T c) {
    return os.insert_char(c);
  }
  template <detail::stream_text T>
  friend ostream& operator<<(ostream& os, T const& text) {
    if constexpr (!std::is_array_v<T> && std::is_pointer_v<T>) {
      if (text == nullptr) {  // the standard inserter's business: badbit
        static_cast<std::ostream&>(os) << text;
        return os;
      }
    }
    return os.insert_text(std::string_view(text));
  }

 private:
  void init() {
    std::ios::rdbuf(&buf_);
    classic_ = getloc() == std::locale::classic();
    register_callback(on_event, 0);
  }

  /// imbue() and copyfmt() are the only ways the locale changes: track
  /// whether it is the classic one, whose number formatting to_chars
  /// reproduces (any other might group digits or replace num_put).
  /// copyfmt() first calls erase_event, then replaces the callbacks with the
  /// source's, which may not include this one: from then on, stay on the
  /// standard path for good. (dynamic_cast: a callback copied to another
  /// stream, or one called while the stream is destroyed, finds no ostream.)
  static void on_event(std::ios_base::event e, std::ios_base& base, int) {
    auto* self = dynamic_cast<ostream*>(&base);
    if (self == nullptr) return;
    if (e == std::ios_base::erase_event)
      self->classic_ = false;
    else
      self->classic_ = self->getloc() == std::locale::classic();
  }

  /// What the standard inserters would do here is a plain copy.
  bool plain() const noexcept { return width() == 0 && tie() == nullptr && good(); }
  ostream& done() {
    if (flags() & std::ios_base::unitbuf) [[unlikely]]
      flush();
    return *this;
  }

  template <class T>
  ostream& insert_integer(T v) {
    constexpr auto custom = (std::ios_base::basefield & ~std::ios_base::dec) | std::ios_base::showpos;
    if (!classic_ || (flags() & custom) != 0 || !plain()) [[unlikely]] {
      std::ostream::operator<<(v);
      return *this;
    }
    constexpr std::size_t longest = std::numeric_limits<T>::digits10 + 2;  // digits and sign
    char* p = buf_.pptr();
    if (static_cast<std::size_t>(buf_.epptr() - p) < longest) [[unlikely]] {
      char text[longest];
      auto const end = std::to_chars(text, text + longest, v).ptr;
      write(text, end - text);  // through the stream: sentry, errors, badbit
      return *this;
    }
    buf_.pbump(static_cast<int>(std::to_chars(p, p + longest, v).ptr - p));
    return done();
  }

  ostream& insert_char(char c) {
    if (plain() && buf_.pptr() != buf_.epptr()) [[likely]] {
      *buf_.pptr() = c;
      buf_.pbump(1);
      return done();
    }
    static_cast<std::ostream&>(*this) << c;
    return *this;
  }

  ostream& insert_text(std::string_view text) {
    if (!plain()) [[unlikely]] {
      static_cast<std::ostream&>(*this) << text;
      return *this;
    }
    if (text.size() <= static_cast<std::size_t>(buf_.epptr() - buf_.pptr())) [[likely]] {
      std::char_traits<char>::copy(buf_.pptr(), text.data(), text.size());
      buf_.pbump(static_cast<int>(text.size()));
      return done();
    }
    write(text.data(), static_cast<std::streamsize>(text.size()));
    return *this;
  }

  writer_buf buf_;
  bool classic_ = true;  // the locale is the classic one
};

/// A std::istream reading from a pipe. See the top of this header.
class istream : public std::istream {
 public:
  /// Borrows `r`, which must outlive the stream. Does not block or throw.
  explicit istream(reader& r) : std::istream(nullptr), buf_(r) { std::ios::rdbuf(&buf_); }
  /// Owns `r`: the destructor closes it.
  explicit istream(reader&& r) : std::istream(nullptr), buf_(std::move(r)) { std::ios::rdbuf(&buf_); }
  ~istream() override = default;

  reader_buf* rdbuf() noexcept { return &buf_; }
  reader& pipe_end() noexcept { return buf_.pipe_end(); }
  /// The pipe error behind badbit, if any.
  std::error_code error() const noexcept { return buf_.error(); }

 private:
  reader_buf buf_;
};

}  // namespace userpipe
