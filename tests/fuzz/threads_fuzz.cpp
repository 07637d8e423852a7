// tests/fuzz/threads_fuzz.cpp — the two ends on two threads. The input is
// split in two programs, one per end: the writer's writes, write_somes,
// prepare/commits and timed writes of fuzzer-chosen sizes, then a close
// (maybe with an error, maybe early); the reader's read_somes, reads,
// peek/consumes, read_lines and timed reads, maybe an early close, then a
// drain to end-of-file. Checked at the end: every byte the reader got is
// the stream's next byte; a reader that drained got exactly what the writer
// says it wrote, then the writer's close reason; a writer fails only after
// the reader closed, with broken_pipe or the reader's reason; and nothing
// hangs (a lost wake-up is a libFuzzer timeout).
//
// Input: byte 0 picks the capacity, byte 1 where the writer's program ends
// and the reader's begins (as a fraction of the rest).
#include <chrono>
#include <string>
#include <thread>
#include <userpipe/pipe.hpp>
#include <vector>

#include "fuzz_input.hpp"

namespace {

using namespace userpipe_fuzz;
using namespace std::chrono_literals;
using std::errc;

/// Stream byte i, with a newline every 17 bytes (and nowhere else) so a
/// read_line result says unambiguously whether it consumed a delimiter.
std::byte stream_byte(std::uint64_t i) {
  if (i % 17 == 16) return std::byte{'\n'};
  std::byte const b = pattern(i);
  return b == std::byte{'\n'} ? std::byte{'N'} : b;
}

struct writer_result {
  std::uint64_t written = 0;  // bytes the calls reported as written
  std::error_code error;      // the first failure, if any
  std::error_code reason;     // what it closed with
};

writer_result run_writer(userpipe::writer w, input in, std::size_t capacity) {
  writer_result out;
  std::vector<std::byte> buf(4 * capacity + 8);
  auto fill = [&](std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) buf[i] = stream_byte(out.written + i);
    return std::span<std::byte const>(buf).first(n);
  };
  while (!in.empty() && !out.error) {
    std::uint8_t const op = in.byte();
    std::size_t const n = std::min(in.size(2 * capacity), buf.size());
    std::error_code ec;
    switch (op % 6) {
      case 0:
        out.written += w.write(fill(n), ec);  // the partial count on error
        break;
      case 1:
        out.written += w.write_some(fill(n), ec);
        break;
      case 2:
        out.written += w.try_write_some(fill(n), ec);
        if (ec == errc::resource_unavailable_try_again) ec.clear();
        break;
      case 3:
        out.written += w.write_for(fill(n), std::chrono::microseconds(op >> 3), ec);
        if (ec == errc::timed_out) ec.clear();
        break;
      case 4: {
        std::size_t const min_size = std::clamp<std::size_t>(n, 1, capacity);
        auto span = w.prepare(min_size, ec);
        if (ec) break;
        std::size_t const k = std::min(in.size(span.size()), span.size());
        for (std::size_t i = 0; i < k; ++i) span[i] = stream_byte(out.written + i);
        w.commit(k, ec);
        if (!ec) out.written += k;
        break;
      }
      case 5:
        if (op & 8) {  // an early close ends the program
          out.reason = reason(op >> 4);
          w.close(out.reason);
          return out;
        }
        std::this_thread::yield();
        break;
    }
    if (ec) out.error = ec;
  }
  out.reason = reason(in.byte());
  w.close(out.reason);
  return out;
}

struct reader_result {
  std::uint64_t read = 0;
  bool stream_ok = true;
  bool drained = false;  // read to end-of-file
  std::error_code eof_error;
  std::error_code reason;  // what it closed with, if early
  std::uint64_t newline_claimed_at = UINT64_MAX;
};

void run_reader(userpipe::reader& r, input in, std::size_t capacity, reader_result& out) {
  std::vector<std::byte> buf(4 * capacity + 8);
  std::string line;
  auto check = [&](std::span<std::byte const> got) {
    for (std::size_t i = 0; i < got.size(); ++i)
      if (got[i] != stream_byte(out.read + i)) out.stream_ok = false;
    out.read += got.size();
  };
  auto eof = [&](std::error_code ec) {
    out.drained = true;
    out.eof_error = ec;
  };
  while (!in.empty()) {
    std::uint8_t const op = in.byte();
    std::size_t const n = std::min(in.size(2 * capacity), buf.size());
    auto span = std::span(buf).first(n);
    std::error_code ec;
    std::size_t got = 0;
    switch (op % 6) {
      case 0:
        got = r.read_some(span, ec);
        check(span.first(got));
        if (n != 0 && got == 0) return eof(ec);
        break;
      case 1:
        got = r.read(span, ec);
        check(span.first(got));
        if (got < n && (ec || got == 0)) return eof(ec);
        break;
      case 2: {
        auto data = r.peek(ec);
        if (data.empty()) return eof(ec);
        std::size_t const k = std::min(in.size(data.size()), data.size());
        check(data.first(k));
        r.consume(k, ec);
        if (ec) out.stream_ok = false;
        break;
      }
      case 3: {
        bool const more = r.read_line(line, '\n', ec);
        check(std::as_bytes(std::span(line)));
        // The delimiter was consumed iff the stream has one here, unless the
        // stream ended just before it (a last line without delimiter): the
        // final check allows for that one case.
        if (more && stream_byte(out.read) == std::byte{'\n'}) out.newline_claimed_at = out.read++;
        if (!more) return eof(ec);
        break;
      }
      case 4:
        got = r.read_some_for(span, std::chrono::microseconds(op >> 3), ec);
        check(span.first(got));
        if (n != 0 && got == 0 && ec != errc::timed_out) return eof(ec);
        break;
      case 5:
        if (op & 8) {  // an early close: the writer must get broken_pipe, not hang
          out.reason = reason(op >> 4);
          r.close(out.reason);
          return;
        }
        got = r.try_read_some(span, ec);
        check(span.first(got));
        if (n != 0 && got == 0 && ec != errc::resource_unavailable_try_again) return eof(ec);
        break;
    }
  }
  // Out of program: drain to end-of-file.
  for (;;) {
    std::error_code ec;
    std::size_t const got = r.read_some(buf, ec);
    check(std::span(buf).first(got));
    if (got == 0) return eof(ec);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  input head(data, size);
  std::size_t const capacity = std::size_t{1} << (head.byte() % 9);
  std::size_t const rest = size > 2 ? size - 2 : 0;
  std::size_t const split = rest * head.byte() / 256;
  input writer_program(data + (size - rest), split);
  input reader_program(data + (size - rest) + split, rest - split);

  auto ends = userpipe::make_pipe({.capacity = capacity});
  userpipe::reader r = std::move(ends.first);
  writer_result wr;
  std::thread writer_thread(
      [&, w = std::move(ends.second)]() mutable { wr = run_writer(std::move(w), writer_program, capacity); });
  reader_result rr;
  run_reader(r, reader_program, capacity, rr);
  bool const reader_closed_early = !rr.drained;
  r.close(rr.reason);  // no-op if closed early; otherwise after EOF
  writer_thread.join();

  // A read_line that returned the stream's last bytes as a line, where a
  // newline would have come next, was counted as having consumed it.
  if (rr.read == wr.written + 1 && rr.newline_claimed_at == wr.written) --rr.read;
  FUZZ_EQ(rr.stream_ok, true);
  FUZZ_EQ(rr.read <= wr.written, true);
  if (rr.drained) {
    // Every byte the writer reported, then its close reason.
    FUZZ_EQ(rr.read, wr.written);
    FUZZ_EC(rr.eof_error, wr.reason);
    FUZZ_EC(wr.error, std::error_code{});
  }
  if (wr.error) {
    // Only a closed reader makes a write fail, with its reason or broken_pipe.
    FUZZ_EQ(reader_closed_early, true);
    FUZZ_EC(wr.error, rr.reason ? rr.reason : std::make_error_code(errc::broken_pipe));
  }
  return 0;
}
