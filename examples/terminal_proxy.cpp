// Proxies an interactive child line by line through userpipe ends, the way
// an orchestrator proxies `lxc-attach` to a websocket or a log without
// giving up its own process: lines in from one side, the child's stdout and
// stderr out, tagged, to the other, and the exit status at the end.
//
//   terminal_proxy [COMMAND [ARGS...]]      (default: sh)
//
// Here "the other side" is this program's own stdin and stdout: type
// commands (`echo hi`, `ls /nope`, `exit 3`); each output line comes back as
// "out| ..." or "err| ...". End-of-file on stdin closes the child's stdin.
#include <functional>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <userpipe/process.hpp>
#include <vector>

namespace {

/// What an orchestrator API would hand out: send lines, get lines back on
/// callbacks (from the session's own threads), learn how it ended.
class session {
 public:
  using line_handler = std::function<void(std::string const&)>;

  session(std::vector<std::string> const& argv, line_handler on_out, line_handler on_err)
      : child_(userpipe::spawn(
            argv, {.in = userpipe::stdio::pipe, .out = userpipe::stdio::pipe, .err = userpipe::stdio::pipe})),
        out_thread_(forward, std::move(child_.out()), std::move(on_out)),
        err_thread_(forward, std::move(child_.err()), std::move(on_err)) {}

  /// False once the child no longer reads its stdin.
  bool send(std::string const& line) {
    std::error_code ec;
    child_.in().write(line + "\n", ec);
    return !ec;
  }

  /// Closes the child's stdin, waits for its output to end and for it to
  /// exit.
  userpipe::exit_status finish() {
    child_.in().close();
    out_thread_.join();
    err_thread_.join();
    return child_.wait();
  }

 private:
  static void forward(userpipe::reader from, line_handler const& to) {
    std::string line;
    std::error_code ec;
    while (from.read_line(line, ec)) to(line);
  }

  userpipe::child child_;
  std::thread out_thread_, err_thread_;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> command(argv + 1, argv + argc);
  if (command.empty()) command = {"sh"};

  std::mutex print;
  auto tagged = [&print](char const* tag) {
    return [&print, tag](std::string const& line) {
      std::lock_guard lock(print);
      std::cout << tag << line << std::endl;
    };
  };

  try {
    session s(command, tagged("out| "), tagged("err| "));
    std::string line;
    while (std::getline(std::cin, line))
      if (!s.send(line)) break;  // the child closed its stdin (exited)
    auto status = s.finish();
    std::lock_guard lock(print);
    if (status.exited())
      std::cout << "exit " << status.code << std::endl;
    else
      std::cout << "killed by signal " << status.signal << std::endl;
    return status.exited() ? status.code : 128 + status.signal;
  } catch (std::system_error const& e) {
    std::cerr << command[0] << ": " << e.what() << '\n';
    return 127;
  }
}
