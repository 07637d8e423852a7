// examples/web_terminal — a terminal in the browser: each WebSocket
// connection runs a command on a pseudo-terminal, its screen goes to the
// browser (xterm.js) and the keystrokes come back, through userpipe rings,
// all on one io_context thread.
//
//   web_terminal --listen 127.0.0.1:8022 [--token T] [--max-sessions N]
//                [--origin O]... [--assets DIR] [--pump event|thread|kernel]
//                [-- command args...]      (default: $SHELL, else /bin/sh)
//
// The protocol (the page speaks it, so can any WebSocket client):
//   GET /ws?token=T[&rows=R&cols=C]   upgrade to WebSocket
//   binary frames, both ways          keystrokes in, screen out
//   text frame {"type":"resize","rows":R,"cols":C}
//   the server's close frame          1000 "exit N" or "signal N" when the
//                                     command ends; 1008 for a malformed
//                                     control message
// See docs/web_terminal.md for the security model and the measurements.
#include <signal.h>
#include <sys/random.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "terminal.hpp"

namespace web_terminal {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;
using namespace net::experimental::awaitable_operators;
using ws_stream = websocket::stream<beast::tcp_stream>;

struct config {
  tcp::endpoint listen{net::ip::make_address("127.0.0.1"), 8022};
  std::string token;
  std::size_t max_sessions = 16;
  std::vector<std::string> origins;
  std::string assets = WEB_TERMINAL_ASSETS_DIR;
  pump_mode pump = pump_mode::event;
  std::vector<std::string> command;
};

struct server {
  config cfg;
  std::size_t sessions = 0;
  std::string index_html, xterm_js, xterm_css, fit_js;  // empty: missing
  // Last, so that it goes first: destroying it destroys the sessions'
  // coroutines, which still use the members above.
  net::io_context io{1};
};

// A keystroke message or a screen chunk: also what one read of the pty
// asks for, so a session holds at most two of each besides the rings.
constexpr std::size_t max_message = 64 * 1024;
// How long a child that ignores SIGHUP keeps running after its client left,
// and how long the screen may stay open after the child exited (a
// background job holding the terminal) before the session ends anyway.
constexpr auto hangup_grace = 3s;
constexpr auto drain_grace = 1s;
// While the terminal's input is full, a ping this often tells whether the
// client is still there (nothing is read from it meanwhile).
constexpr auto liveness_ping = 5s;

std::string read_file(std::string const& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string random_token() {
  unsigned char bytes[16];
  if (::getrandom(bytes, sizeof bytes, 0) != sizeof bytes)
    throw std::system_error(errno, std::generic_category(), "getrandom");
  std::string t;
  for (unsigned char b : bytes) {
    static constexpr char hex[] = "0123456789abcdef";
    t += hex[b >> 4];
    t += hex[b & 15];
  }
  return t;
}

// Compares without an early exit, so the time taken says nothing about how
// much of a guessed token was right.
bool same_secret(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int v = 0;
      auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
      if (ec == std::errc() && p == s.data() + i + 3) {
        out += static_cast<char>(v);
        i += 2;
        continue;
      }
    }
    out += s[i] == '+' ? ' ' : s[i];
  }
  return out;
}

// "/ws?token=abc&rows=24" -> path "/ws", {token: abc, rows: 24}
std::pair<std::string, std::map<std::string, std::string>> split_target(std::string_view target) {
  std::map<std::string, std::string> query;
  auto q = target.find('?');
  std::string path(target.substr(0, q));
  if (q != std::string_view::npos) {
    std::string_view rest = target.substr(q + 1);
    while (!rest.empty()) {
      auto amp = rest.find('&');
      std::string_view pair = rest.substr(0, amp);
      auto eq = pair.find('=');
      query[percent_decode(pair.substr(0, eq))] =
          eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1));
      if (amp == std::string_view::npos) break;
      rest.remove_prefix(amp + 1);
    }
  }
  return {path, query};
}

std::optional<unsigned short> parse_dimension(std::string_view s) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 1 || v > 1000) return std::nullopt;
  return static_cast<unsigned short>(v);
}

// {"type":"resize","rows":R,"cols":C}, 1 <= R, C <= 1000; anything else is
// malformed.
std::optional<std::pair<unsigned short, unsigned short>> parse_resize(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || j.size() != 3 || j.value("type", "") != "resize") return std::nullopt;
  auto dim = [&](char const* key) -> std::optional<unsigned short> {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) return std::nullopt;
    auto v = it->get<long long>();
    if (v < 1 || v > 1000) return std::nullopt;
    return static_cast<unsigned short>(v);
  };
  auto rows = dim("rows"), cols = dim("cols");
  if (!rows || !cols) return std::nullopt;
  return std::pair{*rows, *cols};
}

bool origin_allowed(config const& cfg, http::request<http::string_body> const& req) {
  auto it = req.find(http::field::origin);
  // Browsers always send Origin with a WebSocket upgrade; a client without
  // one is not a browser page, so there is no foreign page to keep out.
  if (it == req.end()) return true;
  return std::find(cfg.origins.begin(), cfg.origins.end(), it->value()) != cfg.origins.end();
}

// What the two pumps and the exit watch of one session share.
struct session_state {
  explicit session_state(net::any_io_executor ex) : exited_event(ex), hangup_timer(ex), drain_timer(ex) {
    exited_event.expires_at(net::steady_timer::time_point::max());
  }
  std::optional<ending> ended;     // the child's status once reaped
  bool client_gone = false;        // the socket failed or finished closing
  bool close_sent = false;         // we started the close handshake
  bool output_done = false;        // the screen reached EOF (or was cut)
  net::steady_timer exited_event;  // cancelled when the child is reaped
  net::steady_timer hangup_timer;  // SIGHUP -> SIGKILL
  net::steady_timer drain_timer;   // exit -> stop waiting for the screen
};

std::string ending_reason(ending e) {
  return e.signal != 0 ? "signal " + std::to_string(e.signal) : "exit " + std::to_string(e.code);
}

// Keystrokes: one WebSocket message at a time into the terminal. While one
// is being written (the child may not be reading), the next is read, so a
// client that closes is seen at once; the one after that waits. So the
// server holds at most two messages of a session's input besides the ring.
net::awaitable<void> input_pump(ws_stream& ws, terminal& term, session_state& s) {
  beast::flat_buffer current, next;
  bool input_dead = false;  // the child closed its terminal's input
  try {
    co_await ws.async_read(current, net::use_awaitable);
    bool current_text = ws.got_text();
    for (;;) {
      if (current_text) {
        auto text = beast::buffers_to_string(current.data());
        if (auto size = parse_resize(text)) {
          term.resize(size->first, size->second);
        } else if (!s.close_sent) {
          s.close_sent = true;
          co_await ws.async_close({websocket::close_code::policy_error, "malformed control message"},
                                  net::use_awaitable);
        }
        current.clear();
        co_await ws.async_read(current, net::use_awaitable);
        current_text = ws.got_text();
        continue;
      }
      bool write_done = false;
      net::steady_timer ping_timer(ws.get_executor());
      auto write_keys = [&]() -> net::awaitable<void> {
        if (!input_dead && !s.close_sent) {
          error_code ec;
          co_await term.write(current.data(), ec);
          if (ec) input_dead = true;
        }
        write_done = true;
        ping_timer.cancel();
      };
      auto read_next = [&]() -> net::awaitable<bool> {
        co_await ws.async_read(next, net::use_awaitable);
        bool text = ws.got_text();
        while (!write_done) {
          ping_timer.expires_after(liveness_ping);
          co_await ping_timer.async_wait(net::as_tuple(net::use_awaitable));
          if (!write_done) co_await ws.async_ping({}, net::use_awaitable);
        }
        co_return text;
      };
      // A throwing read (the client left) cancels the pending write.
      bool next_text = co_await (write_keys() && read_next());
      current.clear();
      std::swap(current, next);
      current_text = next_text;
    }
  } catch (std::exception const&) {
  }
  s.client_gone = true;
  if (!s.ended) {
    term.signal(SIGHUP);
    s.hangup_timer.expires_after(hangup_grace);
    auto [ec] = co_await s.hangup_timer.async_wait(net::as_tuple(net::use_awaitable));
    if (!s.ended) term.signal(SIGKILL);
  }
}

// The screen: pty -> ring -> WebSocket binary frames. A client that stops
// reading stops this loop at its write, so the ring fills and the child
// blocks on its terminal.
net::awaitable<void> output_pump(ws_stream& ws, terminal& term, session_state& s) {
  std::vector<char> buffer(max_message);
  bool socket_ok = true;
  for (;;) {
    error_code ec;
    std::size_t n = co_await term.read_some(net::buffer(buffer), ec);
    if (n > 0 && socket_ok && !s.client_gone) {
      auto [wec, written] =
          co_await ws.async_write(net::buffer(buffer.data(), n), net::as_tuple(net::use_awaitable));
      if (wec) {
        socket_ok = false;
        term.close_output();
      }
    }
    if (ec) break;
  }
  s.output_done = true;
  s.drain_timer.cancel();
  if (!s.ended) co_await s.exited_event.async_wait(net::as_tuple(net::use_awaitable));
  if (socket_ok && !s.client_gone && !s.close_sent && s.ended) {
    s.close_sent = true;
    co_await ws.async_close({websocket::close_code::normal, ending_reason(*s.ended)},
                            net::as_tuple(net::use_awaitable));
  }
}

net::awaitable<void> exit_watch(terminal& term, session_state& s) {
  s.ended = co_await term.wait_exit();
  s.exited_event.cancel();
  s.hangup_timer.cancel();
  if (!s.output_done && !s.client_gone) {
    s.drain_timer.expires_after(drain_grace);
    co_await s.drain_timer.async_wait(net::as_tuple(net::use_awaitable));
  }
  if (!s.output_done) term.close_output();
}

net::awaitable<void> run_session(ws_stream& ws, http::request<http::string_body> req, server& srv,
                                 unsigned short rows, unsigned short cols) {
  auto executor = co_await net::this_coro::executor;
  beast::get_lowest_layer(ws).expires_never();
  websocket::stream_base::timeout timeouts{
      .handshake_timeout = 10s, .idle_timeout = websocket::stream_base::none(), .keep_alive_pings = false};
  ws.set_option(timeouts);
  ws.read_message_max(max_message);
  ws.binary(true);
  ws.set_option(websocket::stream_base::decorator(
      [](websocket::response_type& res) { res.set(http::field::server, "userpipe-web_terminal"); }));
  co_await ws.async_accept(req, net::use_awaitable);

  std::unique_ptr<terminal> term;
  std::string why;
  try {
    term = start_terminal(srv.io.get_executor(), srv.cfg.pump, srv.cfg.command, rows, cols);
  } catch (std::exception const& e) {
    why = std::string("cannot start: ") + e.what();
  }
  if (!term) {
    if (why.size() > 120) why.resize(120);  // a close reason fits in 123 bytes
    co_await ws.async_close({websocket::close_code::internal_error, why}, net::as_tuple(net::use_awaitable));
    co_return;
  }
  session_state s(executor);
  co_await (input_pump(ws, *term, s) && output_pump(ws, *term, s) && exit_watch(*term, s));
}

http::response<http::string_body> respond(http::request<http::string_body> const& req, http::status status,
                                          std::string_view type, std::string body) {
  http::response<http::string_body> res{status, req.version()};
  res.set(http::field::server, "userpipe-web_terminal");
  res.set(http::field::content_type, type);
  res.set(http::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

net::awaitable<void> handle_connection(tcp::socket socket, server& srv) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  try {
    for (;;) {
      stream.expires_after(30s);
      http::request_parser<http::string_body> parser;
      parser.header_limit(8 * 1024);
      parser.body_limit(0);
      co_await http::async_read(stream, buffer, parser, net::use_awaitable);
      auto req = parser.release();
      auto [path, query] = split_target(req.target());
      auto text = [&](http::status st, std::string body) {
        return respond(req, st, "text/plain; charset=utf-8", std::move(body) + "\n");
      };

      if (websocket::is_upgrade(req)) {
        std::optional<http::response<http::string_body>> refusal;
        auto rows = query.count("rows") ? parse_dimension(query["rows"]) : std::optional<unsigned short>(24);
        auto cols = query.count("cols") ? parse_dimension(query["cols"]) : std::optional<unsigned short>(80);
        if (path != "/ws")
          refusal.emplace(text(http::status::not_found, "not found"));
        else if (!same_secret(query["token"], srv.cfg.token))
          refusal.emplace(text(http::status::forbidden, "wrong or missing token"));
        else if (!origin_allowed(srv.cfg, req))
          refusal.emplace(text(http::status::forbidden, "origin not allowed"));
        else if (!rows || !cols)
          refusal.emplace(text(http::status::bad_request, "rows and cols must be 1..1000"));
        else if (srv.sessions >= srv.cfg.max_sessions)
          refusal.emplace(text(http::status::service_unavailable, "too many sessions"));
        if (refusal) {
          refusal->keep_alive(false);
          co_await http::async_write(stream, *refusal, net::use_awaitable);
          break;
        }
        ++srv.sessions;
        struct release {
          server& srv;
          ~release() { --srv.sessions; }
        } release_slot{srv};
        ws_stream ws(std::move(stream));
        co_await run_session(ws, std::move(req), srv, *rows, *cols);
        co_return;
      }

      http::response<http::string_body> res = [&]() -> http::response<http::string_body> {
        if (req.method() != http::verb::get && req.method() != http::verb::head)
          return text(http::status::method_not_allowed, "GET only");
        if (path == "/" || path == "/index.html")
          return respond(req, http::status::ok, "text/html; charset=utf-8", srv.index_html);
        if (path == "/xterm.js" && !srv.xterm_js.empty())
          return respond(req, http::status::ok, "text/javascript; charset=utf-8", srv.xterm_js);
        if (path == "/addon-fit.js" && !srv.fit_js.empty())
          return respond(req, http::status::ok, "text/javascript; charset=utf-8", srv.fit_js);
        if (path == "/xterm.css" && !srv.xterm_css.empty())
          return respond(req, http::status::ok, "text/css; charset=utf-8", srv.xterm_css);
        return text(http::status::not_found, "not found");
      }();
      bool keep_alive = res.keep_alive();
      if (req.method() == http::verb::head) res.body().clear();  // Content-Length stays
      co_await http::async_write(stream, res, net::use_awaitable);
      if (!keep_alive) break;
    }
  } catch (std::exception const&) {
    // A client that vanished or spoke bad HTTP: nothing to tell it.
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

net::awaitable<void> accept_loop(tcp::acceptor acceptor, server& srv) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(net::as_tuple(net::use_awaitable));
    if (ec == net::error::operation_aborted) co_return;
    if (ec) continue;  // e.g. EMFILE: keep serving the sessions we have
    net::co_spawn(acceptor.get_executor(), handle_connection(std::move(socket), srv), net::detached);
  }
}

// Page served when the build could not fetch xterm.js (no npm or network)
// and no index.html is found: says so instead of a blank screen.
constexpr char const* fallback_page =
    "<!doctype html><meta charset=utf-8><title>web_terminal</title>"
    "<p>web_terminal: the page (index.html, xterm.js) is missing from the assets directory. Build the "
    "example with npm available, or pass --assets DIR.</p>";

[[noreturn]] void usage(char const* why) {
  std::fprintf(stderr,
               "web_terminal: %s\n"
               "usage: web_terminal [--listen ADDR:PORT] [--token T] [--max-sessions N] [--origin O]...\n"
               "                    [--assets DIR] [--pump event|thread|kernel] [-- command args...]\n",
               why);
  std::exit(2);
}

config parse_args(int argc, char** argv) {
  config cfg;
  int i = 1;
  auto value = [&](char const* name) -> std::string {
    if (i + 1 >= argc) usage((std::string(name) + " needs a value").c_str());
    return argv[++i];
  };
  for (; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--") {
      for (++i; i < argc; ++i) cfg.command.emplace_back(argv[i]);
      break;
    } else if (a == "--listen") {
      std::string v = value("--listen");
      auto colon = v.rfind(':');
      if (colon == std::string::npos) usage("--listen takes ADDR:PORT");
      std::string host = v.substr(0, colon);
      if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
      unsigned port = 0;
      auto [p, ec] = std::from_chars(v.data() + colon + 1, v.data() + v.size(), port);
      boost::system::error_code aec;
      auto address = net::ip::make_address(host, aec);
      if (ec != std::errc() || p != v.data() + v.size() || port > 65535 || aec)
        usage("--listen takes a numeric ADDR:PORT");
      cfg.listen = {address, static_cast<unsigned short>(port)};
    } else if (a == "--token") {
      cfg.token = value("--token");
      if (cfg.token.empty()) usage("--token must not be empty");
    } else if (a == "--max-sessions") {
      std::string v = value("--max-sessions");
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), cfg.max_sessions);
      if (ec != std::errc() || p != v.data() + v.size() || cfg.max_sessions == 0)
        usage("--max-sessions takes a positive number");
    } else if (a == "--origin") {
      cfg.origins.push_back(value("--origin"));
    } else if (a == "--assets") {
      cfg.assets = value("--assets");
    } else if (a == "--pump") {
      std::string v = value("--pump");
      if (v == "event")
        cfg.pump = pump_mode::event;
      else if (v == "thread")
        cfg.pump = pump_mode::thread;
      else if (v == "kernel")
        cfg.pump = pump_mode::kernel;
      else
        usage("--pump takes event, thread or kernel");
    } else if (a == "--help" || a == "-h") {
      usage("a terminal in the browser");
    } else {
      usage(("unknown option " + std::string(a)).c_str());
    }
  }
  if (cfg.command.empty()) {
    char const* shell = std::getenv("SHELL");
    cfg.command.emplace_back(shell != nullptr && *shell != '\0' ? shell : "/bin/sh");
  }
#ifndef WEB_TERMINAL_HAS_USERPIPE_PTY
  if (cfg.pump != pump_mode::kernel) {
    std::fprintf(stderr, "web_terminal: this build has no userpipe pty; using --pump kernel\n");
    cfg.pump = pump_mode::kernel;
  }
#endif
  return cfg;
}

std::string url_host(net::ip::address const& a) {
  return a.is_v6() ? "[" + a.to_string() + "]" : a.to_string();
}

}  // namespace
}  // namespace web_terminal

int main(int argc, char** argv) {
  using namespace web_terminal;
  server srv{parse_args(argc, argv)};
  net::io_context& io = srv.io;
  // A write to a socket whose client left is an error code, not a signal.
  ::signal(SIGPIPE, SIG_IGN);

  if (srv.cfg.token.empty()) srv.cfg.token = random_token();
  srv.index_html = read_file(srv.cfg.assets + "/index.html");
  if (srv.index_html.empty()) srv.index_html = fallback_page;
  srv.xterm_js = read_file(srv.cfg.assets + "/node_modules/@xterm/xterm/lib/xterm.js");
  srv.xterm_css = read_file(srv.cfg.assets + "/node_modules/@xterm/xterm/css/xterm.css");
  srv.fit_js = read_file(srv.cfg.assets + "/node_modules/@xterm/addon-fit/lib/addon-fit.js");
  if (srv.xterm_js.empty())
    std::fprintf(stderr, "web_terminal: xterm.js not found under %s; the page will say so\n",
                 srv.cfg.assets.c_str());

  tcp::acceptor acceptor(io);
  try {
    acceptor.open(srv.cfg.listen.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(srv.cfg.listen);
    acceptor.listen();
  } catch (boost::system::system_error const& e) {
    std::fprintf(stderr, "web_terminal: cannot listen on %s:%u: %s\n",
                 srv.cfg.listen.address().to_string().c_str(), srv.cfg.listen.port(),
                 e.code().message().c_str());
    return 1;
  }
  auto bound = acceptor.local_endpoint();
  std::string origin = "http://" + url_host(bound.address()) + ":" + std::to_string(bound.port());
  if (srv.cfg.origins.empty()) {
    srv.cfg.origins.push_back(origin);
    if (bound.address().is_loopback())
      srv.cfg.origins.push_back("http://localhost:" + std::to_string(bound.port()));
  }
  if (!bound.address().is_loopback())
    std::fprintf(stderr,
                 "web_terminal: listening on a non-loopback address without TLS: the token crosses the "
                 "network in clear; put a TLS proxy in front\n");
  std::printf("web_terminal: %s/?token=%s\n", origin.c_str(), srv.cfg.token.c_str());
  std::fflush(stdout);

  net::signal_set stop(io, SIGINT, SIGTERM);
  stop.async_wait([&](boost::system::error_code, int) {
    // Ends every session: destroying the io_context destroys the pending
    // coroutines, whose terminals kill and reap their children.
    io.stop();
  });
  net::co_spawn(io, accept_loop(std::move(acceptor), srv), net::detached);
  io.run();
  return 0;
}
