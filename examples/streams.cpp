// Streams and lines: a C++ producer formats into a pipe with <<, a C-style
// logger writes into the same kind of pipe through a FILE*, and consumers
// read with std::getline and with the zero-copy line reader.
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <userpipe/cfile.hpp>
#include <userpipe/stream.hpp>

int main() {
  // 1. std::ostream -> std::istream. The streams own the ends: destroying
  //    the ostream closes the writer, so the reader sees EOF.
  {
    auto [r, w] = userpipe::make_pipe({.capacity = 4096});
    std::thread producer([w = std::move(w)]() mutable {
      userpipe::ostream out(std::move(w));
      for (int i = 0; i < 3; ++i) out << "record " << i << " value " << i * 1.5 << '\n';
    });
    userpipe::istream in(std::move(r));
    std::string word;
    int id = 0;
    double value = 0;
    while (in >> word >> id >> word >> value) std::cout << "parsed id " << id << " value " << value << '\n';
    producer.join();
  }

  // 2. A C API writing to a FILE*, read back without copying the lines.
  {
    auto [r, w] = userpipe::make_pipe({.capacity = 4096, .mirrored = true});
    std::FILE* log = userpipe::open_file(std::move(w));  // fileno(log) == -1: no descriptor
    std::thread producer([log] {
      for (int i = 0; i < 3; ++i) std::fprintf(log, "log line %d\n", i);
      std::fclose(log);  // flushes, closes the writer
    });
    std::string_view line;  // points into the ring until the next call
    while (r.read_line_view(line)) std::cout << "view: " << line << '\n';
    producer.join();
  }
}
