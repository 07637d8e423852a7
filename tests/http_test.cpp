// examples/http_json_upload against the loopback sink: the body arrives
// chunked, whole, in order, one JSON record per line.
#include <gtest/gtest.h>

#include <future>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <userpipe/process.hpp>

#include "support/http_sink.hpp"

using namespace std::chrono_literals;

namespace {

struct run_result {
  userpipe::exit_status status;
  std::string out, err;
};

/// Runs the example as a child, its output through userpipe ends.
run_result run_example(std::vector<std::string> argv) {
  argv.insert(argv.begin(), USERPIPE_HTTP_EXAMPLE);
  auto c = userpipe::spawn(
      argv, {.in = userpipe::stdio::null, .out = userpipe::stdio::pipe, .err = userpipe::stdio::pipe});
  auto read_all = [](userpipe::reader r) {
    std::string all, line;
    std::error_code ec;
    while (r.read_line(line, ec)) all += line + "\n";
    return all;
  };
  auto err = std::async(std::launch::async, read_all, std::move(c.err()));
  auto out = std::async(std::launch::async, read_all, std::move(c.out()));
  if (out.wait_for(120s) != std::future_status::ready) {
    ADD_FAILURE() << "http_json_upload did not finish";
    c.kill(SIGKILL);
  }
  run_result r;
  r.out = out.get();
  r.err = err.get();
  r.status = c.wait();
  return r;
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
  EXPECT_FALSE(r.status.success());
  EXPECT_NE(r.err.find("upload failed"), std::string::npos) << r.err;
}

TEST(HttpJsonUpload, ServerHangingUpMidBodyFailsWithoutHanging) {
  userpipe_support::http_sink sink(/*keep_body=*/false, /*hang_up_after=*/1 << 20);
  auto r = run_example({sink.url(), "1G"});  // curl fails; the producer must see broken_pipe, not block
  EXPECT_FALSE(r.status.success());
  EXPECT_NE(r.err.find("upload failed"), std::string::npos) << r.err;
}
