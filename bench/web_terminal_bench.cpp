// examples/web_terminal under load, three servers in the same binary and
// run: the pty pumped into rings on the event loop (userpipe_event), by a
// thread per direction (userpipe_thread), and read straight from the pty
// master with a stream_descriptor, no userpipe (kernel_pty, the baseline).
// The server is the web_terminal binary, started per run as a child
// process, so its CPU time and peak RSS are its own.
//
//  - web_terminal_sessions/<server>/<N>x<M>MiB: N concurrent sessions each
//    running `head -c M MiB /dev/zero`; the client (one io_context thread in
//    this process) reads every session to its close. Rate: bytes/s over
//    the whole run; counters server_cpu_s, server_peak_rss_MiB.
//  - web_terminal_echo/<server>/1byte: one session running `cat` on a raw,
//    no-echo terminal; the client sends a byte and waits for it to come
//    back. Time per round trip (manual time = mean); counters p50_us,
//    p99_us.
//
// WEB_TERMINAL_BENCH_SESSIONS (default 100) and WEB_TERMINAL_BENCH_MIB
// (default 4; the size is 64, which takes minutes per competitor on
// the 2-CPU machine, see docs/web_terminal.md) size the first table; WEB_TERMINAL_BENCH_ECHOES (default
// 2000) the second.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "main.hpp"
#include "web_terminal_client.hpp"

namespace {

using namespace web_terminal_test;
using clock_type = std::chrono::steady_clock;

long env_or(char const* name, long fallback) {
  char const* v = std::getenv(name);
  return v != nullptr && std::atol(v) > 0 ? std::atol(v) : fallback;
}

net::awaitable<void> drain_session(unsigned short port, std::string target, std::uint64_t& bytes,
                                   int& failures) {
  auto executor = co_await net::this_coro::executor;
  websocket::stream<tcp::socket> ws(executor);
  try {
    co_await ws.next_layer().async_connect({net::ip::make_address("127.0.0.1"), port}, net::use_awaitable);
    co_await ws.async_handshake("127.0.0.1:" + std::to_string(port), target, net::use_awaitable);
    beast::flat_buffer buffer;
    for (;;) {
      auto [ec, n] = co_await ws.async_read(buffer, net::as_tuple(net::use_awaitable));
      if (ec) {
        if (ec != websocket::error::closed) ++failures;
        break;
      }
      bytes += n;
      buffer.consume(n);
    }
  } catch (std::exception const&) {
    ++failures;
  }
}

void sessions(benchmark::State& state, char const* pump) {
  long const n = env_or("WEB_TERMINAL_BENCH_SESSIONS", 100);
  long const mib = env_or("WEB_TERMINAL_BENCH_MIB", 4);
  std::uint64_t const each = static_cast<std::uint64_t>(mib) << 20;
  double cpu = 0, rss = 0;
  std::uint64_t total = 0;
  for (auto _ : state) {
    server_process server(USERPIPE_WEB_TERMINAL, {"--pump", pump, "--max-sessions", std::to_string(n)},
                          {"head", "-c", std::to_string(each), "/dev/zero"});
    double cpu_before = cpu_seconds(server.pid());
    net::io_context io(1);
    std::uint64_t bytes = 0;
    int failures = 0;
    auto start = clock_type::now();
    for (long i = 0; i < n; ++i)
      net::co_spawn(io, drain_session(server.port, "/ws?token=" + server.token, bytes, failures),
                    net::detached);
    io.run();
    auto elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
    state.SetIterationTime(elapsed);
    cpu += cpu_seconds(server.pid()) - cpu_before;
    rss = std::max(rss, static_cast<double>(rss_bytes(server.pid(), "VmHWM:")) / (1 << 20));
    total += bytes;
    if (failures != 0 || bytes != each * static_cast<std::uint64_t>(n)) {
      state.SkipWithError(
          ("sessions failed: " + std::to_string(failures) + ", bytes " + std::to_string(bytes)).c_str());
      break;
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(total));
  state.counters["server_cpu_s"] = benchmark::Counter(cpu, benchmark::Counter::kAvgIterations);
  state.counters["server_peak_rss_MiB"] = rss;
}

void echo(benchmark::State& state, char const* pump) {
  long const rounds = env_or("WEB_TERMINAL_BENCH_ECHOES", 2000);
  server_process server(USERPIPE_WEB_TERMINAL, {"--pump", pump},
                        {"sh", "-c", "stty raw -echo && printf READY && exec cat"});
  client c(server.port, "/ws?token=" + server.token);
  if (!c.read_until("READY")) {
    state.SkipWithError("no READY from the server's cat");
    return;
  }
  std::vector<double> rtts;
  std::size_t seen = c.screen().size();
  for (auto _ : state) {
    for (long i = 0; i < rounds; ++i) {
      auto t0 = clock_type::now();
      c.type("x");
      while (c.screen().size() == seen)
        if (!c.read_once()) {
          state.SkipWithError("session closed");
          return;
        }
      seen = c.screen().size();
      rtts.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
    }
    double sum = 0;
    for (double r : rtts) sum += r;
    state.SetIterationTime(sum / 1e6);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(rtts.size()));
  std::sort(rtts.begin(), rtts.end());
  state.counters["p50_us"] = rtts[rtts.size() / 2];
  state.counters["p99_us"] = rtts[rtts.size() * 99 / 100];
}

// Competitors interleaved per row, so that load from elsewhere on the
// machine hits all three alike.
void register_all() {
  long const n = env_or("WEB_TERMINAL_BENCH_SESSIONS", 100);
  long const mib = env_or("WEB_TERMINAL_BENCH_MIB", 4);
  std::string row = std::to_string(n) + "x" + std::to_string(mib) + "MiB";
  for (auto [name, pump] :
       {std::pair{"kernel_pty", "kernel"}, {"userpipe_event", "event"}, {"userpipe_thread", "thread"}})
    benchmark::RegisterBenchmark(("web_terminal_sessions/" + std::string(name) + "/" + row).c_str(), sessions,
                                 pump)
        ->UseManualTime()
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
  for (auto [name, pump] :
       {std::pair{"kernel_pty", "kernel"}, {"userpipe_event", "event"}, {"userpipe_thread", "thread"}})
    benchmark::RegisterBenchmark(("web_terminal_echo/" + std::string(name) + "/1byte").c_str(), echo, pump)
        ->UseManualTime()
        ->Iterations(1)
        ->Unit(benchmark::kMicrosecond);
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  return bench::run(argc, argv);
}
