// examples/web_terminal end to end: the server runs as a child of the test
// (tests/support/web_terminal_client.hpp stops and reaps it on every path),
// a Beast WebSocket client types into a shell on the server's pty. Loopback
// only; every wait is bounded. Run over each pump mode the build has:
// kernel (no userpipe), and userpipe's event-loop and thread pumps.
//
// WEB_TERMINAL_ABUSE_SECONDS (default 5) sets how long the two abuse tests
// watch the server's memory (docs/web_terminal.md reports 60).
#include <gtest/gtest.h>

#include <atomic>
#include <boost/beast/http.hpp>
#include <cstdlib>
#include <memory>
#include <thread>

#include "web_terminal_client.hpp"

namespace {

using namespace web_terminal_test;
using namespace std::chrono_literals;

std::vector<std::string> pump_modes() {
#if __has_include(<userpipe/boost_asio_process.hpp>)
  return {"event", "thread", "kernel"};
#else
  return {"kernel"};
#endif
}

class WebTerminal : public ::testing::TestWithParam<std::string> {
 protected:
  // PS1 fixed so the prompt never contains what a test looks for.
  std::vector<std::string> shell() { return {"env", "PS1=$ ", "ENV=", "/bin/sh"}; }

  server_process start(std::vector<std::string> command = {}, std::vector<std::string> options = {}) {
    options.insert(options.begin(), {"--pump", GetParam(), "--max-sessions", "4"});  // later ones win
    char const* binary = std::getenv("WEB_TERMINAL_BINARY");  // e.g. a wrapper running it under strace
    return server_process(binary != nullptr ? binary : USERPIPE_WEB_TERMINAL, options,
                          command.empty() ? shell() : command);
  }
  std::string target(server_process const& s) { return "/ws?token=" + s.token; }
  // Connects and waits for the shell's first prompt: keys typed before the
  // shell set its terminal up could be flushed, and its prompt would land
  // in the middle of the output a test looks for.
  std::unique_ptr<client> session(server_process const& s, std::string const& query = "",
                                  std::optional<std::string> origin = {}) {
    auto c = std::make_unique<client>(s.port, target(s) + query, origin);
    if (!c->read_until("$ ")) throw std::runtime_error("no prompt: " + c->screen());
    return c;
  }

  static int abuse_seconds() {
    char const* v = std::getenv("WEB_TERMINAL_ABUSE_SECONDS");
    return v != nullptr ? std::max(1, std::atoi(v)) : 2;
  }
};

// Connects expecting a refusal; returns the HTTP status the server sent.
int refused_status(unsigned short port, std::string const& target, std::optional<std::string> origin = {}) {
  tcp::endpoint ep(net::ip::make_address("127.0.0.1"), port);
  net::io_context io;
  websocket::stream<tcp::socket> ws(io);
  ws.next_layer().connect(ep);
  ws.set_option(websocket::stream_base::decorator([origin](websocket::request_type& req) {
    if (origin) req.set(beast::http::field::origin, *origin);
  }));
  websocket::response_type res;
  beast::error_code ec;
  ws.handshake(res, "127.0.0.1:" + std::to_string(port), target, ec);
  if (!ec) return 101;
  return static_cast<int>(res.result_int());
}

TEST_P(WebTerminal, TypedCommandRunsInTheShell) {
  auto server = start();
  auto session_ = session(server);
  client& c = *session_;
  c.type("echo $((6*7))\n");
  EXPECT_TRUE(c.read_until("\n42\r\n")) << c.screen();
}

TEST_P(WebTerminal, ResizeMessageReachesTheTerminal) {
  auto server = start();
  auto session_ = session(server, "&rows=30&cols=90");
  client& c = *session_;
  c.type("stty size\n");
  EXPECT_TRUE(c.read_until("30 90")) << c.screen();
  c.control(R"({"type":"resize","rows":33,"cols":101})");
  c.type("stty size\n");
  EXPECT_TRUE(c.read_until("33 101")) << c.screen();
}

TEST_P(WebTerminal, ChildExitClosesTheSocketWithItsStatus) {
  auto server = start();
  auto session_ = session(server);
  client& c = *session_;
  c.type("exit 3\n");
  auto reason = c.read_until_closed();
  EXPECT_EQ(c.closed_with(), websocket::error::closed);
  EXPECT_EQ(reason.code, websocket::close_code::normal);
  EXPECT_EQ(std::string(reason.reason.data(), reason.reason.size()), "exit 3");
}

TEST_P(WebTerminal, ChildKilledBySignalClosesWithTheSignal) {
  auto server = start();
  auto session_ = session(server);
  client& c = *session_;
  c.type("kill -9 $$\n");
  auto reason = c.read_until_closed();
  EXPECT_EQ(reason.code, websocket::close_code::normal);
  EXPECT_EQ(std::string(reason.reason.data(), reason.reason.size()), "signal 9");
}

// Closing the socket (with a close frame, or by dropping the connection)
// hangs the child up; the server reaps it and keeps no descriptor.
TEST_P(WebTerminal, ClosingTheSocketLeavesNoChildNoZombieNoDescriptor) {
  auto server = start();
  {  // one full session first, so that whatever the server makes once is made
    auto session_ = session(server);
    client& c = *session_;
    c.type("exit 0\n");
    c.read_until_closed();
  }
  ASSERT_TRUE(eventually([&] { return children_of(server.pid()).empty(); }));
  std::size_t descriptors = open_descriptors(server.pid());

  for (bool with_close_frame : {true, false}) {
    auto session_ = session(server);
    client& c = *session_;
    // A child that outlives a plain hang-up of the shell: sleep in the
    // foreground, so the shell and its job both get SIGHUP.
    c.type("echo ready-$((1+1)); sleep 1000\n");
    ASSERT_TRUE(c.read_until("ready-2"));
    auto kids = children_of(server.pid());
    ASSERT_EQ(kids.size(), 1u);
    if (with_close_frame)
      c.close();
    else
      c.drop();
    EXPECT_TRUE(eventually([&] { return children_of(server.pid()).empty(); }))
        << "with close frame " << with_close_frame;
    EXPECT_NE(::kill(kids[0], 0), 0) << "the shell still exists (a zombie?)";
    // At most as many as after the first session (whose socket may still
    // have been closing when they were counted).
    EXPECT_TRUE(eventually([&] { return open_descriptors(server.pid()) <= descriptors; }))
        << open_descriptors(server.pid()) << " descriptors, " << descriptors << " before";
  }
}

// The event-loop server (and the kernel one) runs every session on its one
// thread; the thread pumps cost two threads a session.
TEST_P(WebTerminal, SessionsCostNoThreadOnTheEventLoop) {
  auto server = start();
  auto threads = [&] { return rss_bytes(server.pid(), "Threads:") / 1024; };
  auto a = session(server), b = session(server), c = session(server);
  if (GetParam() == "thread")
    EXPECT_GE(threads(), 1 + 3 * 2);
  else
    EXPECT_EQ(threads(), 1);
}

TEST_P(WebTerminal, WrongOrMissingTokenIsRefused) {
  auto server = start();
  EXPECT_EQ(refused_status(server.port, "/ws?token=wrong"), 403);
  EXPECT_EQ(refused_status(server.port, "/ws"), 403);
  EXPECT_EQ(refused_status(server.port, "/ws?token=" + server.token.substr(1)), 403);
  EXPECT_TRUE(children_of(server.pid()).empty());
}

TEST_P(WebTerminal, ForeignOriginIsRefused) {
  auto server = start();
  EXPECT_EQ(refused_status(server.port, target(server), "http://evil.example"), 403);
  EXPECT_EQ(refused_status(server.port, target(server), "http://127.0.0.1:1"), 403);
  // The page's own origin is the one allowed.
  auto session_ = session(server, "", server.origin());
  client& c = *session_;
  c.type("echo $((6*7))\n");
  EXPECT_TRUE(c.read_until("\n42\r\n"));
}

TEST_P(WebTerminal, SessionsBeyondTheLimitAreRefused) {
  auto server = start({}, {"--max-sessions", "2"});
  auto a = session(server), b = session(server);
  EXPECT_EQ(refused_status(server.port, target(server)), 503);
  a->type("exit 0\n");
  a->read_until_closed();
  EXPECT_TRUE(eventually([&] { return refused_status(server.port, target(server)) == 101; }));
}

TEST_P(WebTerminal, MalformedControlMessageClosesWithPolicyViolation) {
  auto server = start();
  for (std::string bad :
       {"{not json", R"({"type":"resize","rows":0,"cols":80})", R"({"type":"resize","rows":"24","cols":80})",
        R"({"type":"paste"})", R"({"type":"resize","rows":24,"cols":80,"x":1})", "[]"}) {
    auto session_ = session(server);
    client& c = *session_;
    c.control(bad);
    auto reason = c.read_until_closed();
    EXPECT_EQ(reason.code, websocket::close_code::policy_error) << bad;
  }
  // The server still serves, and the sessions it closed left nothing.
  auto session_ = session(server);
  client& c = *session_;
  c.type("echo $((6*7))\n");
  EXPECT_TRUE(c.read_until("\n42\r\n"));
  c.close();
  EXPECT_TRUE(eventually([&] { return children_of(server.pid()).empty(); }));
}

TEST_P(WebTerminal, OversizedMessageClosesWithTooBig) {
  auto server = start();
  auto session_ = session(server);
  client& c = *session_;
  c.start_message_of(100 * 1024);  // beyond the 64 KiB a message may have
  auto reason = c.read_until_closed();
  EXPECT_EQ(reason.code, websocket::close_code::too_big);
  EXPECT_TRUE(eventually([&] { return children_of(server.pid()).empty(); }));
}

TEST_P(WebTerminal, PageIsServedAndUnknownPathsAreNot) {
  auto server = start();
  auto get = [&](std::string const& target) {
    net::io_context io;
    tcp::socket socket(io);
    socket.connect({net::ip::make_address("127.0.0.1"), server.port});
    beast::http::request<beast::http::empty_body> req{beast::http::verb::get, target, 11};
    req.set(beast::http::field::host, "127.0.0.1");
    beast::http::write(socket, req);
    beast::flat_buffer buffer;
    beast::http::response<beast::http::string_body> res;
    beast::http::read(socket, buffer, res);
    return res;
  };
  auto page = get("/");
  EXPECT_EQ(page.result_int(), 200u);
  EXPECT_NE(page.body().find("<title>web_terminal</title>"), std::string::npos);
  auto xterm = get("/xterm.js");
  // 200 when the build fetched xterm.js (npm), 404 when it could not.
  EXPECT_TRUE(xterm.result_int() == 200 || xterm.result_int() == 404) << xterm.result_int();
  EXPECT_EQ(get("/../../etc/passwd").result_int(), 404u);

  EXPECT_EQ(refused_status(server.port, "/elsewhere?token=" + server.token), 404);
  EXPECT_EQ(refused_status(server.port, target(server) + "&rows=0"), 400);
}

// A client floods keystrokes while the child reads none: the terminal's
// input fills, the session stops reading the socket, and the flood stalls
// in TCP: the server's memory stays flat.
TEST_P(WebTerminal, InputFloodIsHeldBackNotBuffered) {
  auto server = start();
  auto session_ = session(server);
  client& c = *session_;
  c.type("stty raw -echo; echo flood-$((1+1)); sleep 1000\n");
  ASSERT_TRUE(c.read_until("flood-2"));
  long before = rss_bytes(server.pid());
  double cpu_before = cpu_seconds(server.pid());

  constexpr std::size_t total = std::size_t{1} << 30;  // far beyond every buffer on the way
  std::atomic<std::size_t> sent{0};
  std::atomic<bool> stop{false};
  std::thread flood([&] {
    std::string chunk(32 * 1024, 'x');
    beast::error_code ec;
    while (!stop && sent < total) {
      c.stream().write(net::buffer(chunk), ec);
      if (ec) return;
      sent += chunk.size();
    }
  });
  long peak = before;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(abuse_seconds());
  while (std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(100ms);
    peak = std::max(peak, rss_bytes(server.pid()));
  }
  std::size_t accepted = sent;
  double cpu = cpu_seconds(server.pid()) - cpu_before;
  stop = true;
  c.shutdown();
  flood.join();

  RecordProperty("rss_before_kib", std::to_string(before / 1024));
  RecordProperty("rss_peak_kib", std::to_string(peak / 1024));
  RecordProperty("bytes_sent", std::to_string(accepted));
  std::printf(
      "input flood (%s): RSS %ld KiB -> peak %ld KiB; client sent %zu bytes in %d s; server CPU %.2f s\n",
      GetParam().c_str(), before / 1024, peak / 1024, accepted, abuse_seconds(), cpu);
  std::fflush(stdout);
  EXPECT_LT(accepted, total) << "nothing held the flood back";
  EXPECT_LT(peak - before, 8L << 20) << "the server buffered the flood";
}

// The child prints without end (`yes`) and the client stops reading: the
// socket's buffers fill, the session stops reading the ring, the ring and
// the pty fill, and `yes` blocks on its terminal.
TEST_P(WebTerminal, UnreadOutputBlocksTheChildNotTheServer) {
  auto server = start();
  auto session_ = session(server);
  client& c = *session_;
  c.type("yes\n");
  ASSERT_TRUE(c.read_until("y\r\ny\r\ny\r\n"));
  long before = rss_bytes(server.pid());
  double cpu_before = cpu_seconds(server.pid());
  long peak = before;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(abuse_seconds());
  while (std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(100ms);
    peak = std::max(peak, rss_bytes(server.pid()));
  }
  // `yes` is the shell's child; once blocked, it writes nothing more.
  auto shells = children_of(server.pid());
  ASSERT_EQ(shells.size(), 1u);
  auto jobs = children_of(shells[0]);
  ASSERT_EQ(jobs.size(), 1u);
  auto written = [&] {
    std::istringstream io(read_proc("/proc/" + std::to_string(jobs[0]) + "/io"));
    std::string key;
    long long value = 0;
    while (io >> key >> value)
      if (key == "wchar:") return value;
    return -1LL;
  };
  long long w1 = written();
  std::this_thread::sleep_for(500ms);
  long long w2 = written();
  double cpu = cpu_seconds(server.pid()) - cpu_before;

  std::printf(
      "output flood (%s): RSS %ld KiB -> peak %ld KiB over %d s; yes wrote %lld bytes; server CPU %.2f s\n",
      GetParam().c_str(), before / 1024, peak / 1024, abuse_seconds(), w2, cpu);
  std::fflush(stdout);
  EXPECT_EQ(w1, w2) << "yes is still writing: something buffers without bound";
  EXPECT_LT(peak - before, 8L << 20) << "the server buffered the output";
  c.drop();
  EXPECT_TRUE(eventually([&] { return children_of(server.pid()).empty(); }));
}

INSTANTIATE_TEST_SUITE_P(Pumps, WebTerminal, ::testing::ValuesIn(pump_modes()),
                         [](auto const& info) { return info.param; });

}  // namespace
