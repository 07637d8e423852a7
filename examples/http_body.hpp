// A userpipe reader as a libcurl request body (CURLOPT_READFUNCTION), used
// by http_json_upload.cpp and bench/http_bench.cpp.
//
// curl sends whatever one callback returns as one chunk, with one send(2).
// A producer that writes record by record into a pipe read with read_some
// would make one chunk, and one reader sleep and wake-up, per record.
// body_source batches instead with reader::read_some_batched: it waits (with
// no system call unless it must sleep) until half the ring or curl's whole
// buffer is readable, the producer closes, or `linger` passes, then hands
// over everything readable. A full-speed stream costs one wake-up per half
// ring.
#pragma once

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <userpipe/pipe.hpp>

struct body_source {
  userpipe::reader reader;
  /// How long a partial chunk may wait for more before it is sent: the
  /// latency a slow producer sees at most (beyond its own pace).
  std::chrono::milliseconds linger{20};

  std::size_t read(char* buffer, std::size_t size, std::error_code& ec) {
    return reader.read_some_batched({reinterpret_cast<std::byte*>(buffer), size}, size, linger, ec);
  }

  /// The CURLOPT_READFUNCTION; CURLOPT_READDATA is the body_source. End of
  /// file ends the chunked body; a producer's close error aborts the upload.
  static std::size_t curl_read(char* buffer, std::size_t size, std::size_t nitems, void* userdata) {
    std::error_code ec;
    std::size_t const n = static_cast<body_source*>(userdata)->read(buffer, size * nitems, ec);
    return ec ? CURL_READFUNC_ABORT : n;
  }
};

/// The record the example and the benchmark stream: a sensor reading of a
/// typical shape (about 120 bytes of JSON), different for every i.
inline nlohmann::json sample_record(std::uint64_t i) {
  return {{"id", i},
          {"sensor", "sensor-" + std::to_string(i % 977)},
          {"ts", 1700000000000 + i * 10},
          {"value", static_cast<double>(i % 1000) * 0.125},
          {"ok", i % 7 != 0},
          {"tags", {"eu-west", "rack-" + std::to_string(i % 42)}}};
}
