#include <string>
#include <userpipe/pipe.hpp>

int main() {
  auto [reader, writer] = userpipe::make_pipe({.capacity = 16});
  writer.write("consumed\n");
  writer.close();
  std::string line;
  return reader.read_line(line) && line == "consumed" ? 0 : 1;
}
