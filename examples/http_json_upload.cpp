// Streams an unbounded sequence of JSON records to an HTTP server as one
// chunked POST body, never holding the body in memory: a producer thread
// serialises records (nlohmann::json) into a userpipe writer while libcurl
// pulls the body from the reader through CURLOPT_READFUNCTION (see
// http_body.hpp: how the reader becomes full-size chunks).
//
//   http_json_upload URL [COUNT]
//     COUNT  records to send (default 100000), or a byte budget with a
//            K/M/G suffix (64M, 1G): records until that much is sent.
//
// The body is newline-delimited JSON (application/x-ndjson), sent with
// Transfer-Encoding: chunked because its length is unknown up front. Prints
// the server's answer. Exit status: 0 the server answered 2xx, 1 it answered
// something else, 2 bad usage, 3 the upload failed (curl's error on stderr).
#include <curl/curl.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <userpipe/pipe.hpp>

#include "http_body.hpp"

namespace {

std::size_t keep_response(char* data, std::size_t size, std::size_t nmemb, void* userdata) {
  static_cast<std::string*>(userdata)->append(data, size * nmemb);
  return size * nmemb;
}

struct budget {
  std::uint64_t records = 100000;
  std::uint64_t bytes = 0;  // non-zero: stop after this many bytes instead
};

budget parse_count(std::string const& arg) {
  char* end = nullptr;
  std::uint64_t n = std::strtoull(arg.c_str(), &end, 10);
  switch (*end) {
    case '\0':
      return {.records = n};
    case 'K':
    case 'k':
      return {.records = 0, .bytes = n << 10};
    case 'M':
    case 'm':
      return {.records = 0, .bytes = n << 20};
    case 'G':
    case 'g':
      return {.records = 0, .bytes = n << 30};
  }
  throw std::invalid_argument("COUNT: a number, or a number with K, M or G");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::cerr << "usage: " << argv[0] << " URL [COUNT|SIZE{K,M,G}]\n";
    return 2;
  }
  budget const limit = argc == 3 ? parse_count(argv[2]) : budget{};

  // A ring of 1 MiB: the producer runs ahead of the socket by at most that.
  auto [reader, writer] = userpipe::make_pipe({.capacity = 1 << 20});
  body_source body{.reader = std::move(reader)};

  std::uint64_t records_sent = 0;
  std::thread producer([&records_sent, limit, w = std::move(writer)]() mutable {
    std::string line;
    std::uint64_t bytes = 0;
    for (std::uint64_t i = 0; limit.bytes != 0 ? bytes < limit.bytes : i < limit.records; ++i) {
      line = sample_record(i).dump();
      line += '\n';
      std::error_code ec;
      w.write(line, ec);
      if (ec) return;  // broken_pipe: curl gave up on the body; nothing else to do
      bytes += line.size();
      records_sent = i + 1;
    }
    w.close();  // the reader sees EOF after the last record: curl ends the body
  });

  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURL* curl = curl_easy_init();
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/x-ndjson");
  headers = curl_slist_append(headers, "Transfer-Encoding: chunked");
  headers = curl_slist_append(headers, "Expect:");  // send at once; no 100-continue round trip
  std::string response;
  curl_easy_setopt(curl, CURLOPT_URL, argv[1]);
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_READFUNCTION, body_source::curl_read);
  curl_easy_setopt(curl, CURLOPT_READDATA, &body);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, keep_response);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
  CURLcode const rc = curl_easy_perform(curl);

  // However curl ended, the producer must not block on a ring nobody reads.
  body.reader.close();
  producer.join();

  long status = 0;
  curl_off_t uploaded = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(curl, CURLINFO_SIZE_UPLOAD_T, &uploaded);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  curl_global_cleanup();

  if (rc != CURLE_OK) {
    std::cerr << "upload failed: " << curl_easy_strerror(rc) << '\n';
    return 3;  // not 1: a sanitizer's report at exit must not pass for this
  }
  std::cerr << records_sent << " records, " << uploaded << " bytes, HTTP " << status << '\n';
  std::cout << response << '\n';
  return status >= 200 && status < 300 ? 0 : 1;
}
