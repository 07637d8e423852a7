// The other process of tests/shared_test.cpp: adopts the end(s) it is given
// as descriptor numbers on its command line and plays one part. Exit code 0
// means its part went as the test expected; anything else is a failure the
// test reports.
//
//   shm_child sink FD BYTES SEED        read, check every byte, expect EOF
//   shm_child source FD BYTES SEED      write the pattern in random sizes, close
//   shm_child duplex RFD WFD BYTES SEED both at once, on two threads
//   shm_child stream-forever FD SEED    write the pattern until killed
//   shm_child write-then-hang FD BYTES  write BYTES of the pattern, then sleep
//   shm_child hold FD reader|writer     adopt and sleep until killed
//   shm_child close-writer FD ERRNO     write "abc", close(errno) (0: plain close)
//   shm_child close-reader FD ERRNO     read 3 bytes, close(errno)
//   shm_child cycles N                  N rounds of make/hand over/adopt/stream/close in
//                                       this process; fails if a descriptor is left over
//   shm_child fork-and-die FD           fork a sleeper, write its pid and a newline, _exit
//   shm_child receive SOCKET            receive a reader over a Unix socket, read to EOF
//                                       and write back the byte count as text on a
//                                       writer received next
#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <userpipe/shared.hpp>

#include "support/pattern.hpp"

using namespace userpipe;
using userpipe_support::pattern;

namespace {

int fail(char const* what) {
  std::fprintf(stderr, "shm_child: %s\n", what);
  return 1;
}

std::uint64_t number(char const* s) { return std::strtoull(s, nullptr, 10); }

int sink(reader r, std::uint64_t bytes, std::uint64_t seed) {
  try {
    return pattern::read_and_check(r, bytes, seed) ? 0 : fail("sink: wrong bytes or no EOF");
  } catch (std::exception const& e) {
    return fail(e.what());
  }
}

int source(writer w, std::uint64_t bytes, std::uint64_t seed) {
  try {
    pattern::write(w, bytes, seed);
    w.close();
    return 0;
  } catch (std::exception const& e) {
    return fail(e.what());
  }
}

int count_descriptors() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d) != nullptr) ++n;
    ::closedir(d);
  }
  return n;
}

int cycles(std::uint64_t rounds) {
  int const before = count_descriptors();
  for (std::uint64_t i = 0; i < rounds; ++i) {
    auto [r, w] = make_pipe({.capacity = 4096, .shared = true});
    writer w2 = adopt_writer(to_descriptor(std::move(w)));
    reader r2 = adopt_reader(to_descriptor(std::move(r)));
    w2.write("cycle");
    w2.close();
    char buf[8];
    std::size_t n = r2.read(std::as_writable_bytes(std::span(buf)));
    if (n != 5 || std::memcmp(buf, "cycle", 5) != 0) return fail("cycles: wrong bytes");
  }
  return count_descriptors() == before ? 0 : fail("cycles: descriptors left over");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return fail("usage");
  std::string const mode = argv[1];
  try {
    if (mode == "sink" && argc == 5) return sink(adopt_reader(int(number(argv[2]))), number(argv[3]), number(argv[4]));
    if (mode == "source" && argc == 5)
      return source(adopt_writer(int(number(argv[2]))), number(argv[3]), number(argv[4]));
    if (mode == "duplex" && argc == 6) {
      reader r = adopt_reader(int(number(argv[2])));
      writer w = adopt_writer(int(number(argv[3])));
      int out = 0;
      std::thread t([&] { out = source(std::move(w), number(argv[4]), number(argv[5]) + 1); });
      int const in = sink(std::move(r), number(argv[4]), number(argv[5]));
      t.join();
      return in | out;
    }
    if (mode == "stream-forever" && argc == 4) {
      writer w = adopt_writer(int(number(argv[2])));
      pattern::write(w, ~std::uint64_t{0} >> 1, number(argv[3]));
      return fail("stream-forever: returned");
    }
    if (mode == "write-then-hang" && argc == 4) {
      writer w = adopt_writer(int(number(argv[2])));
      pattern::write(w, number(argv[3]), 1);
      for (;;) ::pause();
    }
    if (mode == "hold" && argc == 4) {
      if (std::strcmp(argv[3], "reader") == 0) {
        reader r = adopt_reader(int(number(argv[2])));
        for (;;) ::pause();
      }
      writer w = adopt_writer(int(number(argv[2])));
      for (;;) ::pause();
    }
    if (mode == "close-writer" && argc == 4) {
      writer w = adopt_writer(int(number(argv[2])));
      w.write("abc");
      int const e = int(number(argv[3]));
      w.close(e != 0 ? std::error_code(e, std::generic_category()) : std::error_code{});
      return 0;
    }
    if (mode == "close-reader" && argc == 4) {
      reader r = adopt_reader(int(number(argv[2])));
      char buf[3];
      if (r.read(std::as_writable_bytes(std::span(buf))) != 3) return fail("close-reader: short read");
      int const e = int(number(argv[3]));
      r.close(e != 0 ? std::error_code(e, std::generic_category()) : std::error_code{});
      return 0;
    }
    if (mode == "cycles") return cycles(number(argv[2]));
    if (mode == "fork-and-die") {
      writer w = adopt_writer(int(number(argv[2])));
      pid_t const f = ::fork();
      if (f == 0) {
        ::sleep(60);
        ::_exit(0);
      }
      w.write(std::to_string(f) + "\n");
      ::_exit(0);  // no close: the writer dies with us
    }
    if (mode == "receive") {
      int const s = int(number(argv[2]));
      reader r = receive_reader(s);
      writer w = receive_writer(s);
      std::uint64_t total = 0;
      char buf[4096];
      while (std::size_t n = r.read_some(std::as_writable_bytes(std::span(buf)))) total += n;
      w.write(std::to_string(total));
      return 0;
    }
  } catch (std::exception const& e) {
    return fail(e.what());
  }
  return fail("usage");
}
