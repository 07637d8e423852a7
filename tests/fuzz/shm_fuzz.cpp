// tests/fuzz/shm_fuzz.cpp — the fuzzer is the hostile peer of a shared pipe.
//
// One thread holds both ends of a shared pipe (make_pipe({.shared = true}))
// and runs a program read from the fuzzer's input: non-blocking and briefly
// timed calls on either end (try_ calls, _for calls of 0 or 1 ms, prepare/
// commit, peek/consume, closes), and between them writes of arbitrary bytes
// into the shared mapping, where the other process's words live: the
// indices, the wait words, the close flags and reasons. Whatever the peer
// writes there, every call must return (a hang is a libFuzzer timeout),
// stay inside the mapping (spans are checked against it; guard pages
// around it turn a stray copy into a crash) and keep ASan and UBSan quiet.
// Until the first such write the pipe is honest, and then every byte read
// must be the byte written (the stream of fuzz_input.hpp's pattern).
//
// The mapping is found as a peer would find it: it is the memfd mapping
// that make_pipe added to /proc/self/maps. The harness writes through that
// mapping (the same pages the other process would write through its own).
//
// Input: byte 0 picks the capacity (one to four pages) and mirroring, then
// each operation is an opcode byte and its arguments.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <userpipe/pipe.hpp>
#include <userpipe/shared.hpp>
#include <vector>

#include "fuzz_input.hpp"

namespace {

using namespace userpipe_fuzz;
using namespace std::chrono_literals;

struct range {
  std::uintptr_t begin, end;
  bool operator<(range const& o) const { return begin < o.begin; }
};

/// The memfd mappings of this process, from /proc/self/maps.
std::set<range> memfd_mappings() {
  std::set<range> out;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("/memfd:") == std::string::npos) continue;
    std::istringstream in(line);
    std::uintptr_t b = 0, e = 0;
    char dash = 0;
    in >> std::hex >> b >> dash >> e;
    out.insert({b, e});
  }
  return out;
}

/// A PROT_NONE page range placed right before or after the mapping, if the
/// address space there is free: a copy that runs off the ring faults.
struct guard {
  void* at = nullptr;
  std::size_t size = 0;
  guard(std::uintptr_t address, std::size_t n) {
    void* p = ::mmap(reinterpret_cast<void*>(address), n, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p != MAP_FAILED && p == reinterpret_cast<void*>(address)) {
      at = p;
      size = n;
    } else if (p != MAP_FAILED) {
      ::munmap(p, n);  // an old kernel ignoring NOREPLACE's exactness
    }
  }
  guard(guard const&) = delete;
  ~guard() {
    if (at != nullptr) ::munmap(at, size);
  }
};

enum op : std::uint8_t {
  try_write_some,
  write_for,
  try_prepare_commit,
  close_writer,
  try_read_some,
  read_some_for,
  read_for_all,
  try_peek_consume,
  close_reader,
  query,
  poke_word,
  poke_word_delta,
  poke_bytes,
  hand_over,
  op_count
};

class harness {
 public:
  harness(input& in, std::size_t capacity, bool mirrored)
      : in_(in), scratch_(2 * capacity + 64), before_(memfd_mappings()) {
    auto [r, w] = userpipe::make_pipe({.capacity = capacity, .mirrored = mirrored, .shared = true});
    r_ = std::move(r);
    w_ = std::move(w);
    find_mappings();
    if (mine_.empty()) {
      std::fprintf(stderr, "userpipe fuzz: no memfd mapping for a shared pipe\n");
      std::abort();
    }
  }

  void step() {
    switch (static_cast<op>(in_.byte() % op_count)) {
      case try_write_some:
        return do_write(false);
      case write_for:
        return do_write(true);
      case try_prepare_commit:
        return do_prepare_commit();
      case close_writer:
        return do_close(true);
      case try_read_some:
        return do_read(false, false);
      case read_some_for:
        return do_read(true, false);
      case read_for_all:
        return do_read(true, true);
      case try_peek_consume:
        return do_peek_consume();
      case close_reader:
        return do_close(false);
      case query:
        return do_query();
      case poke_word:
        return do_poke_word(false);
      case poke_word_delta:
        return do_poke_word(true);
      case poke_bytes:
        return do_poke_bytes();
      case hand_over:
        return do_hand_over();
      case op_count:
        break;
    }
  }

 private:
  /// The pipe's memfd mappings: those this process did not have before (a
  /// handed-over end maps the memfd again, as another process would). The
  /// words the peer writes are in the memfd's first page, which every
  /// mapping starts with; a mirrored ring's second mapping follows the
  /// first, and a span may run from one into the other: one range.
  void find_mappings() {
    mine_.clear();
    for (auto const& m : memfd_mappings())
      if (!before_.count(m)) mine_.push_back(m);
    header_ = nullptr;  // both ends gone (a failed adopt): nothing left to poke
    header_size_ = 0;
    if (mine_.empty()) return;
    std::sort(mine_.begin(), mine_.end());
    header_ = reinterpret_cast<std::byte*>(mine_.front().begin);
    header_size_ = std::min<std::size_t>(mine_.front().end - mine_.front().begin, 4096);
    for (std::size_t i = 1; i < mine_.size();)
      if (mine_[i].begin == mine_[i - 1].end) {
        mine_[i - 1].end = mine_[i].end;
        mine_.erase(mine_.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    std::size_t const page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    for (auto const& m : mine_) {
      guards_.push_back(std::make_unique<guard>(m.begin - 16 * page, 16 * page));
      guards_.push_back(std::make_unique<guard>(m.end, 16 * page));
    }
  }

  /// 0 or 1 ms: long enough to sleep (and be woken or time out), short
  /// enough that a thousand of them stay far from libFuzzer's timeout.
  std::chrono::milliseconds timeout() { return std::chrono::milliseconds(in_.byte() % 16 == 15 ? 1 : 0); }

  bool inside(void const* p, std::size_t n) const {
    auto const b = reinterpret_cast<std::uintptr_t>(p);
    for (auto const& m : mine_)
      if (b >= m.begin && b + n <= m.end) return true;
    return false;
  }

  void check_span(void const* p, std::size_t n) const {
    if (n != 0 && !inside(p, n)) {
      std::fprintf(stderr, "userpipe fuzz: span of %zu bytes at %p outside the pipe's mapping\n", n, p);
      std::abort();
    }
  }

  /// An honest pipe delivers the stream written, byte for byte.
  void check_read(std::byte const* p, std::size_t n) {
    if (!lied_)
      for (std::size_t i = 0; i < n; ++i)
        FUZZ_EQ(static_cast<int>(p[i]), static_cast<int>(pattern(read_ + i)));
    read_ += n;
  }

  std::span<std::byte const> outgoing(std::size_t n) {
    n = std::min(n, scratch_.size());
    for (std::size_t i = 0; i < n; ++i) scratch_[i] = pattern(written_ + i);
    return std::span(scratch_).first(n);
  }

  void do_write(bool timed) {
    auto data = outgoing(in_.size(2 * w_.capacity() + 1));
    std::error_code ec;
    std::size_t const n = timed ? w_.write_for(data, timeout(), ec) : w_.try_write_some(data, ec);
    FUZZ_EQ(n <= data.size(), true);
    // A call that moved bytes reports no error (pipe.hpp). Not checked for
    // write_for: write_until returns the count of a partial write together
    // with the error that stopped it (a reader closing meanwhile), also on a
    // heap pipe with two honest threads; reported, left to the core.
    if (n != 0 && !timed) FUZZ_EC(ec, std::error_code{});
    written_ += n;
  }

  void do_prepare_commit() {
    std::error_code ec;
    auto span = w_.try_prepare(ec);
    check_span(span.data(), span.size());
    if (ec || span.empty()) return;
    std::size_t const k = std::min(in_.size(span.size()), span.size());
    for (std::size_t i = 0; i < k; ++i) span[i] = pattern(written_ + i);
    w_.commit(k, ec);
    if (!ec) written_ += k;
  }

  void do_read(bool timed, bool all) {
    std::size_t const n = std::min(in_.size(2 * r_.capacity() + 1), scratch_.size());
    auto buf = std::span(scratch_).first(n);
    std::error_code ec;
    std::size_t got = 0;
    if (all) {
      // read() blocks until the buffer is full: bound it by asking only for
      // what is there (a lying index may claim more; then it must still
      // return, with protocol_error, not wait).
      std::size_t const there = r_.available();
      if (there == 0 || there > buf.size()) return;
      got = r_.read_some_for(buf.first(there), timeout(), ec);
    } else {
      got = timed ? r_.read_some_for(buf, timeout(), ec) : r_.try_read_some(buf, ec);
    }
    FUZZ_EQ(got <= buf.size(), true);
    if (got != 0) FUZZ_EC(ec, std::error_code{});
    check_read(buf.data(), got);
  }

  void do_peek_consume() {
    std::error_code ec;
    auto span = r_.try_peek(ec);
    check_span(span.data(), span.size());
    if (ec || span.empty()) return;
    std::size_t const k = std::min(in_.size(span.size()), span.size());
    std::vector<std::byte> const copy(span.begin(), span.begin() + static_cast<std::ptrdiff_t>(k));
    r_.consume(k, ec);
    if (!ec) check_read(copy.data(), k);
  }

  void do_close(bool writer) {
    std::uint8_t const how = in_.byte();
    std::error_code const why = reason(how >> 1);
    if (writer)
      (how & 1) ? w_.close(why) : w_.close();
    else
      (how & 1) ? r_.close(why) : r_.close();
  }

  void do_query() {
    std::size_t const there = r_.available();
    if (!lied_) FUZZ_EQ(there, static_cast<std::size_t>(r_.is_open() ? written_ - read_ : 0));
    (void)w_.reader_closed();
    auto const s = r_.stats();
    auto const t = w_.stats();
    if (!lied_ && r_.is_open() && w_.is_open()) {
      FUZZ_EQ(s.bytes_written, written_);
      FUZZ_EQ(s.bytes_read, read_);
      FUZZ_EQ(t.bytes_written, written_);
    }
  }

  /// Hands an end over to "another process" and back: to_descriptor, then
  /// adopt, which checks the header the fuzzer may have written and maps
  /// the memfd a second time. From then on the two ends have separate
  /// private views, as in two processes. A corrupt header makes adopt fail
  /// (with a closed end); nothing else may happen.
  void do_hand_over() {
    bool const writer = in_.byte() & 1;
    std::error_code ec;
    int const fd =
        writer ? userpipe::to_descriptor(std::move(w_), ec) : userpipe::to_descriptor(std::move(r_), ec);
    if (fd < 0) return;  // a closed end
    if (writer)
      w_ = userpipe::adopt_writer(fd, ec);
    else
      r_ = userpipe::adopt_reader(fd, ec);
    if (ec && !lied_) FUZZ_EC(ec, std::error_code{});
    guards_.clear();  // the new mapping may want the space of an old guard
    find_mappings();
  }

  /// Writes a 64-bit word at an 8-aligned offset of the header: a new
  /// value, or the old one moved by a small amount (an index a little
  /// ahead, behind, or past the capacity).
  void do_poke_word(bool delta) {
    if (header_ == nullptr) return;
    std::size_t const offset = (in_.size(header_size_ / 8 - 1) * 8) % header_size_;
    std::uint64_t value = 0;
    std::memcpy(&value, header_ + offset, sizeof value);
    if (delta) {
      std::int64_t const d = static_cast<std::int8_t>(in_.byte());
      std::uint64_t const scale = (in_.byte() & 1) ? r_.capacity() + 1 : 1;
      value += static_cast<std::uint64_t>(d) * scale;
    } else {
      value = 0;
      for (int i = 0; i < 8; ++i) value = value << 8 | in_.byte();
    }
    std::memcpy(header_ + offset, &value, sizeof value);
    lied_ = true;
  }

  /// Arbitrary bytes anywhere in the first page.
  void do_poke_bytes() {
    if (header_ == nullptr) return;
    std::size_t const offset = in_.size(header_size_ - 1) % header_size_;
    std::size_t const n = std::min<std::size_t>(1 + in_.byte() % 16, header_size_ - offset);
    for (std::size_t i = 0; i < n; ++i) header_[offset + i] = static_cast<std::byte>(in_.byte());
    lied_ = true;
  }

  input& in_;
  std::vector<std::byte> scratch_;
  std::vector<range> mine_;
  std::set<range> const before_;
  std::vector<std::unique_ptr<guard>> guards_;
  std::byte* header_ = nullptr;
  std::size_t header_size_ = 0;
  std::uint64_t written_ = 0, read_ = 0;
  bool lied_ = false;
  userpipe::reader r_;
  userpipe::writer w_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  input in(data, size);
  std::uint8_t const setup = in.byte();
  std::size_t const page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  harness h(in, page << (setup & 3), (setup & 4) != 0);
  for (int steps = 0; !in.empty() && steps < 1024; ++steps) h.step();
  return 0;
}
