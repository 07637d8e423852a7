// tests/support/web_terminal_client.hpp — what the web_terminal test and
// benchmark share: the server as a child process (started, stopped and
// reaped by the handle's destructor on every path), a blocking Beast
// WebSocket client with bounded reads, and /proc readings of the server.
#pragma once

#include <dirent.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "userpipe/process.hpp"

namespace web_terminal_test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

/// The web_terminal binary running as a child of this process.
class server_process {
 public:
  server_process(std::string const& binary, std::vector<std::string> options,
                 std::vector<std::string> command) {
    std::vector<std::string> argv{binary, "--listen", "127.0.0.1:0", "--token", token};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.push_back("--");
    argv.insert(argv.end(), command.begin(), command.end());
    child_ = userpipe::spawn(argv, {.out = userpipe::stdio::pipe});
    std::string line;
    if (!child_.out().read_line(line)) throw std::runtime_error("web_terminal printed nothing");
    // "web_terminal: http://127.0.0.1:PORT/?token=T"
    auto colon = line.rfind(':');
    port = static_cast<unsigned short>(std::stoi(line.substr(colon + 1)));
  }
  server_process(server_process const&) = delete;
  /// SIGTERM first, so the server ends its sessions (kills and reaps its
  /// children); the handle's destructor would SIGKILL and reap otherwise.
  ~server_process() { stop(); }

  userpipe::exit_status stop() {
    if (!stopped_) {
      stopped_ = true;
      std::error_code ec;
      child_.kill(SIGTERM, ec);
      status_ = child_.wait(ec);
    }
    return status_;
  }
  pid_t pid() const { return child_.pid(); }
  std::string origin() const { return "http://127.0.0.1:" + std::to_string(port); }

  std::string const token = "test-token-0123456789";
  unsigned short port = 0;

 private:
  userpipe::child child_;
  bool stopped_ = false;
  userpipe::exit_status status_;
};

inline std::string read_proc(std::string const& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Resident set size of a process, in bytes (VmRSS); or another field of
/// /proc/PID/status, times 1024.
inline long rss_bytes(pid_t pid, char const* field = "VmRSS:") {
  std::istringstream in(read_proc("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::string(field).size())) * 1024;
  return -1;
}

/// user + system CPU seconds of a process (all its threads).
inline double cpu_seconds(pid_t pid) {
  std::string stat = read_proc("/proc/" + std::to_string(pid) + "/stat");
  std::istringstream in(stat.substr(stat.rfind(')') + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

/// The processes whose parent is `pid` (zombies included).
inline std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> kids;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return kids;
  while (dirent* e = ::readdir(d)) {
    char* end;
    long p = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || p <= 0) continue;
    std::string stat = read_proc("/proc/" + std::string(e->d_name) + "/stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream in(stat.substr(close + 2));
    char state;
    long ppid;
    if (in >> state >> ppid && ppid == pid) kids.push_back(static_cast<pid_t>(p));
  }
  ::closedir(d);
  return kids;
}

inline std::size_t open_descriptors(pid_t pid) {
  std::size_t n = 0;
  DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (d == nullptr) return 0;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n;
}

/// Polls `condition` every 10 ms for at most `limit`; true if it held.
/// (A bound against hanging, not a timing assertion.)
template <class F>
bool eventually(F condition, std::chrono::seconds limit = std::chrono::seconds(30)) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

/// A blocking WebSocket client; every read gives up (throws) after 30 s,
/// so a test cannot hang on a silent server.
class client {
 public:
  /// Connects and upgrades; throws beast::system_error when refused, with
  /// the HTTP response in refusal().
  explicit client(unsigned short port, std::string const& target, std::optional<std::string> origin = {}) {
    tcp::endpoint ep(net::ip::make_address("127.0.0.1"), port);
    ws_.next_layer().connect(ep);
    ws_.set_option(websocket::stream_base::decorator([origin](websocket::request_type& req) {
      if (origin) req.set(beast::http::field::origin, *origin);
    }));
    beast::error_code ec;
    ws_.handshake(response_, "127.0.0.1:" + std::to_string(port), target, ec);
    if (ec) throw beast::system_error(ec);
    ws_.binary(true);
  }

  websocket::response_type const& refusal() const { return response_; }

  void type(std::string const& keys) { ws_.write(net::buffer(keys)); }
  /// Starts a binary message that claims `size` bytes and sends only its
  /// first few, straight on the socket. A server that refuses the size from
  /// the frame header answers before the rest would arrive; sending the whole
  /// message instead races its own write against that refusal (the server
  /// then closes with our bytes unread, the kernel resets the connection and
  /// the write fails with EPIPE or ECONNRESET, as CI saw once).
  void start_message_of(std::uint64_t size) {
    std::vector<unsigned char> frame{0x82, 0x80 | 127};  // FIN, binary; masked, 64-bit length
    for (int shift = 56; shift >= 0; shift -= 8) frame.push_back(static_cast<unsigned char>(size >> shift));
    for (unsigned char key : {0x11, 0x22, 0x33, 0x44}) frame.push_back(key);
    frame.resize(frame.size() + 16, 0x5a);  // the payload's first bytes; the rest never comes
    net::write(ws_.next_layer(), net::buffer(frame));
  }
  void control(std::string const& json) {
    ws_.text(true);
    ws_.write(net::buffer(json));
    ws_.binary(true);
  }

  /// Reads screen output until `needle` appears in it (searching what came
  /// since the last match). False if the session closed first.
  bool read_until(std::string const& needle) {
    for (;;) {
      auto at = screen_.find(needle, searched_);
      if (at != std::string::npos) {
        searched_ = at + needle.size();
        return true;
      }
      if (!read_once()) return false;
    }
  }
  /// Reads until the server closes; returns its close reason.
  websocket::close_reason read_until_closed() {
    while (read_once()) {
    }
    return ws_.reason();
  }
  /// One frame of output (appended to screen()); false once closed.
  bool read_once() {
    beast::flat_buffer b;
    beast::error_code ec = bounded([&](auto handler) { ws_.async_read(b, handler); });
    if (ec) {
      closed_ = ec;
      return false;
    }
    screen_ += beast::buffers_to_string(b.data());
    return true;
  }

  void close() { ws_.close(websocket::close_code::normal); }
  /// Drops the connection without a close frame.
  void drop() {
    beast::error_code ec;
    ws_.next_layer().shutdown(tcp::socket::shutdown_both, ec);
    ws_.next_layer().close(ec);
  }
  /// Unblocks a write in progress on another thread (shutdown, not close:
  /// the descriptor stays valid under that thread).
  void shutdown() { ::shutdown(ws_.next_layer().native_handle(), SHUT_RDWR); }

  std::string const& screen() const { return screen_; }
  beast::error_code closed_with() const { return closed_; }
  websocket::stream<tcp::socket>& stream() { return ws_; }

 private:
  // Runs one asynchronous operation to completion or 30 s, whichever is
  // first; after 30 s the socket is cancelled and this throws.
  template <class Start>
  beast::error_code bounded(Start start) {
    beast::error_code result;
    bool done = false;
    io_.restart();
    start([&](beast::error_code ec, std::size_t) {
      result = ec;
      done = true;
    });
    io_.run_for(std::chrono::seconds(30));
    if (done) return result;
    beast::error_code ignored;
    ws_.next_layer().cancel(ignored);
    io_.restart();
    io_.run();
    throw std::runtime_error("web_terminal client: no frame from the server in 30 s");
  }

  net::io_context io_;
  websocket::stream<tcp::socket> ws_{io_};
  websocket::response_type response_;
  std::string screen_;
  std::size_t searched_ = 0;
  beast::error_code closed_;
};

}  // namespace web_terminal_test
