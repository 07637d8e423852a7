// The README's example: one thread writes lines, another reads them.
#include <iostream>
#include <string>
#include <thread>
#include <userpipe/pipe.hpp>

int main() {
  auto [reader, writer] = userpipe::make_pipe({.capacity = 4096});

  std::thread producer([w = std::move(writer)]() mutable {
    for (int i = 0; i < 5; ++i) w.write("record " + std::to_string(i) + "\n");
    w.close();  // the reader sees EOF after the last byte (destruction would too)
  });

  std::string line;
  while (reader.read_line(line)) std::cout << "got: " << line << '\n';

  producer.join();
  auto s = reader.stats();
  std::cout << s.bytes_read << " bytes, reader slept " << s.reader_sleeps << " times\n";
}
