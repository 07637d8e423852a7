// examples/http_json_upload against the loopback sink: the body arrives
// chunked, whole, in order, one JSON record per line.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <userpipe/process.hpp>

#include "support/http_sink.hpp"
#include "support/run_example.hpp"

using namespace std::chrono_literals;

namespace {

int const upload_failed = 3;  // the example's documented exit status

userpipe_support::example_result run_example(std::vector<std::string> args) {
  return userpipe_support::run_example(USERPIPE_HTTP_EXAMPLE, std::move(args));
}

}  // namespace

TEST(HttpJsonUpload, SinkReceivesEveryRecordInOrderAsAChunkedBody) {
  userpipe_support::http_sink sink(/*keep_body=*/true);
  auto r = run_example({sink.url(), "5000"});
  ASSERT_TRUE(r.status.success()) << r.err;
  auto requests = sink.requests();
  ASSERT_EQ(requests.size(), 1u);
  auto const& req = requests[0];
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.target, "/upload");
  EXPECT_TRUE(req.chunked);
  EXPECT_EQ(req.lines, 5000u);
  std::istringstream body(req.body);
  std::string line;
  std::uint64_t expected_id = 0;
  while (std::getline(body, line)) {
    auto record = nlohmann::json::parse(line);
    ASSERT_EQ(record.at("id").get<std::uint64_t>(), expected_id) << line;
    ++expected_id;
  }
  EXPECT_EQ(expected_id, 5000u);
  // The example prints the sink's answer, which counted the same bytes.
  auto answer = nlohmann::json::parse(r.out);
  EXPECT_EQ(answer.at("bytes").get<std::uint64_t>(), req.body_bytes);
}

TEST(HttpJsonUpload, ByteBudgetSendsWholeRecordsPastIt) {
  userpipe_support::http_sink sink;
  auto r = run_example({sink.url(), "256K"});
  ASSERT_TRUE(r.status.success()) << r.err;
  auto requests = sink.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_GE(requests[0].body_bytes, 256u << 10);
  EXPECT_LT(requests[0].body_bytes, (256u << 10) + 1024);  // stops after the record that crosses it
  EXPECT_TRUE(requests[0].chunked);
}

TEST(HttpJsonUpload, UnreachableServerFailsWithoutHanging) {
  std::string url;
  {
    userpipe_support::http_sink sink;  // a port that was just free
    url = sink.url();
  }
  auto r = run_example({url, "1G"});  // the producer must not block on an unread ring
  EXPECT_EQ(r.status.code, upload_failed) << r.err;
  EXPECT_EQ(r.status.signal, 0);
  EXPECT_NE(r.err.find("upload failed"), std::string::npos) << r.err;
}

TEST(HttpJsonUpload, ServerHangingUpMidBodyFailsWithoutHanging) {
  userpipe_support::http_sink sink(/*keep_body=*/false, /*hang_up_after=*/1 << 20);
  auto r = run_example({sink.url(), "1G"});  // curl fails; the producer must see broken_pipe, not block
  EXPECT_EQ(r.status.code, upload_failed) << r.err;
  EXPECT_EQ(r.status.signal, 0);
  EXPECT_NE(r.err.find("upload failed"), std::string::npos) << r.err;
}

// ---- the sink itself: it referees what a client sent, so it must be strict ----

namespace {

/// Sends `request` to the sink on a fresh connection, half-closes, and
/// returns everything the sink answered until it closed.
std::string send_raw(userpipe_support::http_sink const& sink, std::string_view request) {
  int const fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(sink.port());
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
  ::shutdown(fd, SHUT_WR);
  std::string answer;
  char buf[4096];
  while (ssize_t n = ::recv(fd, buf, sizeof buf, 0)) {
    if (n < 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return answer;
}

std::string const chunked_head = "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";

std::string status_line(std::string const& answer) { return answer.substr(0, answer.find("\r\n")); }

}  // namespace

TEST(HttpSink, CountsAWellFormedChunkedBody) {
  userpipe_support::http_sink sink(/*keep_body=*/true);
  auto answer = send_raw(sink, chunked_head + "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n");
  EXPECT_EQ(status_line(answer), "HTTP/1.1 200 OK");
  auto requests = sink.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].body, "hello world");
  EXPECT_EQ(requests[0].body_bytes, 11u);
  EXPECT_EQ(sink.rejected(), 0u);
}

TEST(HttpSink, RejectsChunkDataLongerThanItsSize) {
  userpipe_support::http_sink sink;
  auto answer = send_raw(sink, chunked_head + "5\r\nhelloWORLD\r\n0\r\n\r\n");
  EXPECT_EQ(status_line(answer), "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(sink.requests().size(), 0u);
  EXPECT_EQ(sink.rejected(), 1u);
}

TEST(HttpSink, RejectsAGarbageTerminator) {
  userpipe_support::http_sink sink;
  auto answer = send_raw(sink, chunked_head + "5\r\nhello\r\n0\r\ngarbage\r\n\r\n");
  EXPECT_EQ(status_line(answer), "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(sink.requests().size(), 0u);
  EXPECT_EQ(sink.rejected(), 1u);
}

TEST(HttpSink, RejectsAGarbageRequestLine) {
  userpipe_support::http_sink sink;
  auto answer = send_raw(sink, "hello there\r\n\r\n");
  EXPECT_EQ(status_line(answer), "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(sink.rejected(), 1u);
}

TEST(HttpSink, AnswersANonHexChunkSizeWith400) {
  // Not std::stoull throwing in a worker thread, which aborts the process.
  userpipe_support::http_sink sink;
  auto answer = send_raw(sink, chunked_head + "zz\r\nhello\r\n0\r\n\r\n");
  EXPECT_EQ(status_line(answer), "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(sink.rejected(), 1u);
}
