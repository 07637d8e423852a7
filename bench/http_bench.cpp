// The headline use: a producer thread serialises JSON records (nlohmann)
// into a pipe while libcurl sends the pipe's other end as a chunked POST body
// to a loopback sink. Same producer, same curl callback shape, same sink; only
// the pipe differs:
//   userpipe              writer.write(record) / body_source (http_body.hpp)
//                         in the callback: waits for half the ring, then reads
//   kernel_pipe           write(2) per record / read(2) until curl's buffer is
//                         full in the callback (the straight translation of
//                         the userpipe code)
//   kernel_pipe_buffered  a 64 KiB stdio buffer in front of write(2): what a
//                         careful kernel-pipe user does to batch system calls
// Both pipes hold 64 KiB (the kernel default and userpipe's).
//
// CPU: the sink runs in a child process forked before anything else, so
// getrusage(RUSAGE_SELF) is the client's own time (producer + curl). The
// counters user_s and sys_s are per upload; since the socket work is the same
// for every competitor, sys_s(kernel_pipe) - sys_s(userpipe) is the pipe's
// share of the system time.
//
// Size: USERPIPE_HTTP_MIB (default 1024) per upload.
#include <benchmark/benchmark.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <userpipe/pipe.hpp>

#include "http_body.hpp"
#include "http_sink.hpp"
#include "main.hpp"

namespace {

std::uint64_t upload_bytes() {
  char const* v = std::getenv("USERPIPE_HTTP_MIB");
  return (v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : 1024) << 20;
}

std::string sink_url;

[[noreturn]] void fail(char const* what) {
  std::perror(what);
  std::exit(1);
}

/// Serialises records into `write` until `limit` bytes; returns the count.
template <class Write>
std::uint64_t produce(std::uint64_t limit, Write&& write) {
  std::string line;
  std::uint64_t bytes = 0;
  for (std::uint64_t i = 0; bytes < limit; ++i) {
    line = sample_record(i).dump();
    line += '\n';
    if (!write(line)) break;
    bytes += line.size();
  }
  return bytes;
}

// The kernel-pipe callback fills curl's buffer (64 KiB) before returning, as
// body_source does for the ring (http_body.hpp), so that chunks on the wire
// are full-size whichever pipe feeds them.
std::size_t fd_body(char* buffer, std::size_t size, std::size_t nitems, void* userdata) {
  int const fd = *static_cast<int*>(userdata);
  std::size_t got = 0;
  while (got < size * nitems) {
    ssize_t n = ::read(fd, buffer + got, size * nitems - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return got != 0 ? got : CURL_READFUNC_ABORT;
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  return got;
}

std::size_t keep(char* data, std::size_t size, std::size_t nmemb, void* userdata) {
  static_cast<std::string*>(userdata)->append(data, size * nmemb);
  return size * nmemb;
}

/// The sink's count of the body it received ({"bytes":N,...}), or -1.
std::int64_t received_bytes(std::string const& answer) {
  auto j = nlohmann::json::parse(answer, nullptr, /*allow_exceptions=*/false);
  return j.is_object() && j.contains("bytes") && j["bytes"].is_number_unsigned()
             ? j["bytes"].get<std::int64_t>()
             : -1;
}

double seconds(timeval tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6; }

enum class competitor { userpipe, kernel_pipe, kernel_pipe_buffered };

void upload(benchmark::State& state, competitor which) {
  std::uint64_t const limit = upload_bytes();
  CURL* curl = curl_easy_init();
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/x-ndjson");
  headers = curl_slist_append(headers, "Transfer-Encoding: chunked");
  headers = curl_slist_append(headers, "Expect:");
  curl_easy_setopt(curl, CURLOPT_URL, sink_url.c_str());
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  std::string answer;
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, keep);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);

  double user = 0, sys = 0;
  std::uint64_t sent = 0;
  for (auto _ : state) {
    rusage before{}, after{};
    getrusage(RUSAGE_SELF, &before);
    std::uint64_t produced = 0;
    answer.clear();
    CURLcode rc;
    if (which == competitor::userpipe) {
      auto [r, w] = userpipe::make_pipe();
      body_source body{.reader = std::move(r)};
      std::thread producer([&, w = std::move(w)]() mutable {
        produced = produce(limit, [&](std::string const& line) {
          std::error_code ec;
          w.write(line, ec);
          return !ec;
        });
        w.close();
      });
      curl_easy_setopt(curl, CURLOPT_READFUNCTION, body_source::curl_read);
      curl_easy_setopt(curl, CURLOPT_READDATA, &body);
      rc = curl_easy_perform(curl);
      body.reader.close();
      producer.join();
    } else {
      int fds[2];
      if (::pipe2(fds, O_CLOEXEC) != 0) fail("pipe2");
      std::thread producer([&, fd = fds[1]] {
        if (which == competitor::kernel_pipe) {
          produced = produce(limit, [fd](std::string const& line) {
            for (std::string_view rest = line; !rest.empty();) {
              ssize_t n = ::write(fd, rest.data(), rest.size());
              if (n < 0 && errno == EINTR) continue;
              if (n < 0) return false;
              rest.remove_prefix(static_cast<std::size_t>(n));
            }
            return true;
          });
          ::close(fd);
        } else {
          FILE* out = ::fdopen(fd, "w");
          std::setvbuf(out, nullptr, _IOFBF, 65536);
          produced = produce(limit, [out](std::string const& line) {
            return std::fwrite(line.data(), 1, line.size(), out) == line.size();
          });
          std::fclose(out);
        }
      });
      curl_easy_setopt(curl, CURLOPT_READFUNCTION, fd_body);
      curl_easy_setopt(curl, CURLOPT_READDATA, &fds[0]);
      rc = curl_easy_perform(curl);
      ::close(fds[0]);  // a producer still writing gets EPIPE (SIGPIPE is ignored in main)
      producer.join();
    }
    getrusage(RUSAGE_SELF, &after);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK || status != 200) {
      state.SkipWithError(rc != CURLE_OK ? curl_easy_strerror(rc) : "sink did not answer 200");
      break;
    }
    // What arrived is the result, not what the producer believes it wrote.
    if (received_bytes(answer) != static_cast<std::int64_t>(produced)) {
      state.SkipWithError(("bytes lost: produced " + std::to_string(produced) + ", the sink received " +
                           std::to_string(received_bytes(answer)))
                              .c_str());
      break;
    }
    user += seconds(after.ru_utime) - seconds(before.ru_utime);
    sys += seconds(after.ru_stime) - seconds(before.ru_stime);
    sent += produced;
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  state.SetBytesProcessed(static_cast<std::int64_t>(sent));
  state.counters["user_s"] = benchmark::Counter(user, benchmark::Counter::kAvgIterations);
  state.counters["sys_s"] = benchmark::Counter(sys, benchmark::Counter::kAvgIterations);
}

/// Forks the sink before any thread exists and returns its pid; the sink
/// dies with this process even if it is killed.
pid_t start_sink() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) fail("pipe2");
  pid_t const parent = ::getpid();
  pid_t const pid = ::fork();
  if (pid < 0) fail("fork");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(0);
    ::close(fds[0]);
    userpipe_support::http_sink sink;
    std::uint16_t const port = sink.port();
    if (::write(fds[1], &port, sizeof port) != sizeof port) ::_exit(1);
    ::close(fds[1]);
    for (;;) ::pause();  // until the benchmark kills it
  }
  ::close(fds[1]);
  std::uint16_t port = 0;
  if (::read(fds[0], &port, sizeof port) != sizeof port) fail("sink did not start");
  ::close(fds[0]);
  sink_url = "http://127.0.0.1:" + std::to_string(port) + "/upload";
  return pid;
}

}  // namespace

int main(int argc, char** argv) {
  pid_t const sink = start_sink();
  ::signal(SIGPIPE, SIG_IGN);  // the kernel-pipe producers see EPIPE if curl gives up
  curl_global_init(CURL_GLOBAL_DEFAULT);

  std::string const row = "/" + std::to_string(upload_bytes() >> 20) + "MiB";
  for (auto const& [name, entry] :
       {std::pair{"userpipe", competitor::userpipe}, std::pair{"kernel_pipe", competitor::kernel_pipe},
        std::pair{"kernel_pipe_buffered", competitor::kernel_pipe_buffered}}) {
    competitor const which = entry;
    benchmark::RegisterBenchmark(("http_json/" + std::string(name) + row).c_str(),
                                 [which](benchmark::State& s) { upload(s, which); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(1);
  }
  int const status = bench::run(argc, argv);
  curl_global_cleanup();
  ::kill(sink, SIGKILL);
  ::waitpid(sink, nullptr, 0);
  return status;
}
