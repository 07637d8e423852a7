// A loopback HTTP/1.1 sink for the HTTP upload test and benchmark: listens
// on 127.0.0.1 (an ephemeral port), reads each request body (Content-Length
// or chunked), discards it and answers 200 with a JSON summary of what it
// received: {"bytes":N,"lines":L,"chunked":true}. One thread per connection,
// keep-alive honoured, "Expect: 100-continue" answered. Not a general server:
// just enough HTTP for curl's POST, written to be obviously correct.
//
// Strict, because it is the referee of what a client sent: every framing
// line must end in CRLF, a chunk's data must be followed by CRLF exactly
// where its size says, and a malformed request line, header, chunk size or
// trailer is answered 400 and the connection closed (never an exception in
// a worker thread). Tested in tests/http_test.cpp (HttpSink).
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
#include <charconv>
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
  /// Requests answered 400: a malformed request line, header, chunk size,
  /// chunk data not followed by CRLF, or trailer. The connection is closed.
  std::uint64_t rejected() const {
    std::lock_guard lock(mutex_);
    return rejected_;
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
    /// Until `n` bytes are buffered; false at EOF first.
    bool need(std::size_t n) {
      while (data().size() < n)
        if (!fill()) return false;
      return true;
    }
    /// The next line without its CRLF. eof: the peer closed first; bad: a
    /// bare LF (HTTP/1.1 ends every line of the framing in CRLF).
    enum class got { line, eof, bad };
    got line(std::string& out) {
      for (;;) {
        auto d = data();
        if (auto nl = d.find('\n'); nl != std::string_view::npos) {
          if (nl == 0 || d[nl - 1] != '\r') return got::bad;
          out.assign(d.substr(0, nl - 1));
          begin += nl + 1;
          return got::line;
        }
        if (!fill()) return got::eof;
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

  /// A number in `base` that fills `text` exactly (no sign, no space, no
  /// overflow); false otherwise.
  static bool parse_number(std::string_view text, int base, std::uint64_t& out) {
    auto const* const last = text.data() + text.size();
    auto [end, ec] = std::from_chars(text.data(), last, out, base);
    return !text.empty() && ec == std::errc{} && end == last;
  }

  /// "METHOD /target HTTP/1.x", nothing else.
  static bool parse_request_line(std::string const& line, http_request_summary& req) {
    auto const sp1 = line.find(' '), sp2 = line.rfind(' ');
    if (sp1 == std::string::npos || sp1 == 0 || sp2 <= sp1 + 1) return false;
    req.method = line.substr(0, sp1);
    req.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string_view const version = std::string_view(line).substr(sp2 + 1);
    bool const token = std::all_of(req.method.begin(), req.method.end(),
                                   [](char ch) { return std::isupper(static_cast<unsigned char>(ch)) != 0; });
    return token && req.target.find(' ') == std::string::npos && req.target[0] == '/' &&
           (version == "HTTP/1.1" || version == "HTTP/1.0");
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

  enum class outcome { ok, closed, bad };

  /// Reads a chunked body (RFC 9112, section 7.1): size lines in hex with
  /// optional ";extension", each chunk's data followed by exactly CRLF, a
  /// last chunk of size 0, "name: value" trailers and an empty line.
  outcome read_chunked(connection& c, http_request_summary& req) {
    std::string line;
    for (;;) {
      if (auto g = c.line(line); g != connection::got::line)
        return g == connection::got::bad ? outcome::bad : outcome::closed;
      std::string_view size_text = line;
      size_text = size_text.substr(0, size_text.find(';'));
      std::uint64_t size = 0;
      if (!parse_number(size_text, 16, size)) return outcome::bad;
      if (size == 0) break;
      if (!read_body(c, size, req)) return outcome::closed;
      if (!c.need(2)) return outcome::closed;
      if (c.data().substr(0, 2) != "\r\n") return outcome::bad;  // data longer than its size said
      c.begin += 2;
    }
    for (;;) {  // trailers, up to the empty line
      if (auto g = c.line(line); g != connection::got::line)
        return g == connection::got::bad ? outcome::bad : outcome::closed;
      if (line.empty()) return outcome::ok;
      auto const colon = line.find(':');
      if (colon == std::string::npos || colon == 0) return outcome::bad;
    }
  }

  /// Reads the header block; fills content_length, chunked, expect_continue.
  static outcome read_headers(connection& c, http_request_summary& req, std::uint64_t& content_length,
                              bool& expect_continue) {
    std::string line;
    for (;;) {
      if (auto g = c.line(line); g != connection::got::line)
        return g == connection::got::bad ? outcome::bad : outcome::closed;
      if (line.empty()) return outcome::ok;
      auto const colon = line.find(':');
      if (colon == std::string::npos || colon == 0) return outcome::bad;
      std::string_view value = std::string_view(line).substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
      if (iequals_prefix(line, "content-length:") && !parse_number(value, 10, content_length))
        return outcome::bad;
      if (iequals_prefix(line, "transfer-encoding:")) {
        if (value != "chunked") return outcome::bad;  // the only coding this sink knows
        req.chunked = true;
      }
      if (iequals_prefix(line, "expect:") && value.find("100") != std::string_view::npos)
        expect_continue = true;
    }
  }

  void serve(int fd) {
    connection c{fd};
    std::string line;
    for (;;) {
      http_request_summary req;
      if (c.data().empty() && !c.fill()) return;  // the client is done
      auto g = c.line(line);
      if (g == connection::got::eof) return;
      outcome o = g == connection::got::bad || !parse_request_line(line, req) ? outcome::bad : outcome::ok;
      std::uint64_t content_length = 0;
      bool expect_continue = false;
      if (o == outcome::ok) o = read_headers(c, req, content_length, expect_continue);
      if (o == outcome::ok && expect_continue && !c.send_all("HTTP/1.1 100 Continue\r\n\r\n")) return;
      if (o == outcome::ok)
        o = req.chunked                         ? read_chunked(c, req)
            : read_body(c, content_length, req) ? outcome::ok
                                                : outcome::closed;
      if (o == outcome::closed) return;
      if (o == outcome::bad) {
        {
          std::lock_guard lock(mutex_);
          ++rejected_;
        }
        c.send_all("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
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
  std::uint64_t rejected_ = 0;
};

}  // namespace userpipe_support
