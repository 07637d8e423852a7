// A userpipe reader as a libcurl request body (CURLOPT_READFUNCTION), used
// by http_json_upload.cpp and bench/http_bench.cpp.
//
// curl sends whatever one callback returns as one chunk, with one send(2).
// A producer that writes record by record into a pipe read with read_some
// would make one chunk, and one reader sleep and wake-up, per record.
// body_source batches instead: it waits (with no system call unless it must
// sleep) until half the ring or curl's whole buffer is ready, the producer
// closes, or `linger` passes with at least one byte, then hands over
// everything readable. The wait uses reader::park, the core's hook for event
// loops: the producer's commit releases a semaphore once the threshold is
// reached, so a full-speed stream costs one wake-up per half ring.
#pragma once

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <semaphore>
#include <userpipe/pipe.hpp>

struct body_source {
  userpipe::reader reader;
  /// How long a partial chunk may wait for more before it is sent: the
  /// latency a slow producer sees at most (beyond its own pace).
  std::chrono::milliseconds linger{20};
  /// Released by the producer's thread when the parked threshold is met.
  /// Lives as long as the producer may still call it: join the producer
  /// before destroying a body_source.
  std::binary_semaphore ready{0};

  std::size_t read(char* buffer, std::size_t size, std::error_code& ec) {
    std::size_t const want = std::min(size, reader.capacity() / 2);
    if (want != 0 && reader.available() < want &&
        reader.park(
            want, [](void* s) noexcept { static_cast<std::binary_semaphore*>(s)->release(); }, &ready)) {
      // Timed out: withdraw; if the callback is already on its way, take
      // its release so that it cannot satisfy a later wait.
      if (!ready.try_acquire_for(linger) && !reader.unpark()) ready.acquire();
    }
    // Blocks for one byte only if linger passed with none.
    return reader.read_some({reinterpret_cast<std::byte*>(buffer), size}, ec);
  }

  /// The CURLOPT_READFUNCTION; CURLOPT_READDATA is the body_source. End of
  /// file ends the chunked body; a producer's close error aborts the upload.
  static std::size_t curl_read(char* buffer, std::size_t size, std::size_t nitems, void* userdata) {
    std::error_code ec;
    std::size_t const n = static_cast<body_source*>(userdata)->read(buffer, size * nitems, ec);
    return ec ? CURL_READFUNC_ABORT : n;
  }
};
