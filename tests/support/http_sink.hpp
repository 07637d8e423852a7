// A loopback HTTP/1.1 sink for the HTTP upload test and benchmark: listens
// on 127.0.0.1 (an ephemeral port), reads each request body (Content-Length
// or chunked), discards it and answers 200 with a JSON summary of what it
// received: {"bytes":N,"lines":L,"chunked":true}. One thread per connection,
// keep-alive honoured, "Expect: 100-continue" answered. Not a general server:
// just enough HTTP for curl's POST, written to be obviously correct.
//
// Shared by tests/http_test.cpp and bench/http_bench.cpp (which runs it in a
// child process so that its CPU time is not the client's).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

namespace userpipe_support {

struct http_request_summary {
  std::string method, target;
  bool chunked = false;
  std::uint64_t body_bytes = 0;
  std::uint64_t lines = 0;  // '\n' in the body
  std::string body;         // kept only if the sink was made with keep_body
};

class http_sink {
 public:
  /// keep_body: store each body in its summary (for small tests).
  /// hang_up_after: non-zero, close the connection once a body has passed
  /// that many bytes, as a server that gives up mid-upload.
  explicit http_sink(bool keep_body = false, std::uint64_t hang_up_after = 0)
      : keep_body_(keep_body), hang_up_after_(hang_up_after) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) throw std::system_error(errno, std::generic_category(), "socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_fd_, 16) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      int e = errno;
      ::close(listen_fd_);
      throw std::system_error(e, std::generic_category(), "bind/listen");
    }
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~http_sink() {
    ::shutdown(listen_fd_, SHUT_RDWR);  // accept(2) returns
    acceptor_.join();
    {
      std::lock_guard lock(mutex_);
      for (int fd : connections_) ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& t : workers_) t.join();
    ::close(listen_fd_);
  }

  http_sink(http_sink const&) = delete;
  http_sink& operator=(http_sink const&) = delete;

  std::uint16_t port() const { return port_; }
  std::string url(std::string_view path = "/upload") const {
    return "http://127.0.0.1:" + std::to_string(port_) + std::string(path);
  }
  /// Requests whose body has been read completely, in order.
  std::vector<http_request_summary> requests() const {
    std::lock_guard lock(mutex_);
    return done_;
  }

 private:
  /// Buffered reads from one connection.
  struct connection {
    int fd;
    std::vector<char> buf = std::vector<char>(1 << 18);
    std::size_t begin = 0, end = 0;
    std::string_view data() const { return {buf.data() + begin, end - begin}; }
    /// Reads more; false at EOF or error.
    bool fill() {
      if (begin == end) begin = end = 0;
      if (end == buf.size()) {
        if (begin == 0) return false;  // a header line longer than the buffer
        std::memmove(buf.data(), buf.data() + begin, end - begin);
        end -= begin;
        begin = 0;
      }
      for (;;) {
        ssize_t n = ::recv(fd, buf.data() + end, buf.size() - end, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        end += static_cast<std::size_t>(n);
        return true;
      }
    }
    /// The next line without its CRLF; false at EOF.
    bool line(std::string& out) {
      for (;;) {
        auto d = data();
        if (auto nl = d.find('\n'); nl != std::string_view::npos) {
          out.assign(d.substr(0, nl));
          if (!out.empty() && out.back() == '\r') out.pop_back();
          begin += nl + 1;
          return true;
        }
        if (!fill()) return false;
      }
    }
    bool send_all(std::string_view s) const {
      while (!s.empty()) {
        ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        s.remove_prefix(static_cast<std::size_t>(n));
      }
      return true;
    }
  };

  void accept_loop() {
    for (;;) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;  // shut down
      }
      std::lock_guard lock(mutex_);
      connections_.push_back(fd);
      workers_.emplace_back([this, fd] {
        serve(fd);
        std::lock_guard lock(mutex_);
        connections_.erase(std::find(connections_.begin(), connections_.end(), fd));
        ::close(fd);
      });
    }
  }

  static bool iequals_prefix(std::string_view line, std::string_view name) {
    if (line.size() < name.size()) return false;
    for (std::size_t i = 0; i < name.size(); ++i)
      if (std::tolower(static_cast<unsigned char>(line[i])) != name[i]) return false;
    return true;
  }

  /// Takes up to `n` body bytes that are already buffered.
  void take(connection& c, std::size_t n, http_request_summary& req) {
    std::string_view piece = c.data().substr(0, n);
    req.body_bytes += piece.size();
    req.lines += static_cast<std::uint64_t>(std::count(piece.begin(), piece.end(), '\n'));
    if (keep_body_) req.body.append(piece);
    c.begin += piece.size();
  }

  /// Reads exactly `n` body bytes.
  bool read_body(connection& c, std::uint64_t n, http_request_summary& req) {
    while (n != 0) {
      if (hang_up_after_ != 0 && req.body_bytes >= hang_up_after_) return false;
      if (c.data().empty() && !c.fill()) return false;
      std::size_t const before = static_cast<std::size_t>(req.body_bytes);
      take(c, static_cast<std::size_t>(std::min<std::uint64_t>(n, c.data().size())), req);
      n -= req.body_bytes - before;
    }
    return true;
  }

  void serve(int fd) {
    connection c{fd};
    std::string line;
    for (;;) {
      http_request_summary req;
      if (!c.line(line) || line.empty()) return;
      auto sp1 = line.find(' '), sp2 = line.rfind(' ');
      if (sp1 == std::string::npos || sp2 <= sp1) return;
      req.method = line.substr(0, sp1);
      req.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
      std::uint64_t content_length = 0;
      bool expect_continue = false;
      for (;;) {
        if (!c.line(line)) return;
        if (line.empty()) break;
        if (iequals_prefix(line, "content-length:")) content_length = std::stoull(line.substr(15));
        if (iequals_prefix(line, "transfer-encoding:") && line.find("chunked") != std::string::npos)
          req.chunked = true;
        if (iequals_prefix(line, "expect:") && line.find("100") != std::string::npos) expect_continue = true;
      }
      if (expect_continue && !c.send_all("HTTP/1.1 100 Continue\r\n\r\n")) return;
      if (req.chunked) {
        for (;;) {
          if (!c.line(line)) return;
          std::uint64_t const size = std::stoull(line, nullptr, 16);  // stops at ';' extensions
          if (size == 0) break;
          if (!read_body(c, size, req) || !c.line(line)) return;  // the CRLF after the data
        }
        do {
          if (!c.line(line)) return;  // trailers, up to the empty line
        } while (!line.empty());
      } else if (!read_body(c, content_length, req)) {
        return;
      }
      std::string const body = "{\"bytes\":" + std::to_string(req.body_bytes) +
                               ",\"lines\":" + std::to_string(req.lines) +
                               ",\"chunked\":" + (req.chunked ? "true" : "false") + "}";
      std::string const response = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                                   std::to_string(body.size()) + "\r\n\r\n" + body;
      {
        std::lock_guard lock(mutex_);
        done_.push_back(std::move(req));
      }
      if (!c.send_all(response)) return;
    }
  }

  bool keep_body_;
  std::uint64_t hang_up_after_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::thread acceptor_;
  mutable std::mutex mutex_;
  std::vector<int> connections_;
  std::vector<std::thread> workers_;
  std::vector<http_request_summary> done_;
};

}  // namespace userpipe_support
