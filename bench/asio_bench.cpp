// userpipe's Asio streams against Asio's own kernel pipe
// (asio::connect_pipe: readable_pipe/writable_pipe over pipe(2), driven by
// epoll), with C++20 coroutines, in one binary and one run.
//
// Tables (benchmark names are "<table>/<competitor>/<row>", row = chunk):
//   asio_one_thread   a producer coroutine async_writes <row>-byte chunks, a
//                     consumer coroutine async_read_somes into a <row>-byte
//                     buffer; both on one io_context run by one thread (the
//                     fiber case of the original pipe);
//   asio_two_threads  the same with each end on its own io_context and
//                     thread.
// Competitors: userpipe (64 KiB ring), kernel_pipe (64 KiB, the default).
// Each iteration moves 64 MiB through a fresh pipe and io_context(s).
#include <benchmark/benchmark.h>

#include <asio/co_spawn.hpp>
#include <asio/connect_pipe.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/readable_pipe.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/writable_pipe.hpp>
#include <asio/write.hpp>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <userpipe/asio.hpp>
#include <vector>

#include "main.hpp"

namespace {

constexpr std::uint64_t bytes_per_iteration = std::uint64_t{64} << 20;

template <class WriteStream>
asio::awaitable<void> produce(WriteStream& out, std::size_t chunk) {
  std::vector<char> buf(chunk, 'x');
  for (std::uint64_t done = 0; done < bytes_per_iteration; done += chunk)
    co_await asio::async_write(out, asio::buffer(buf), asio::use_awaitable);
  out.close();
}

template <class ReadStream>
asio::awaitable<void> consume(ReadStream& in, std::size_t chunk, std::uint64_t& received) {
  std::vector<char> buf(chunk);
  for (;;) {
    std::error_code ec;
    std::size_t n =
        co_await in.async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
    received += n;
    benchmark::DoNotOptimize(buf.data());
    if (ec) co_return;
  }
}

struct userpipe_streams {
  userpipe::async_reader in;
  userpipe::async_writer out;
  static userpipe_streams make(asio::io_context& a, asio::io_context& b) {
    auto [r, w] = userpipe::make_pipe({.capacity = 65536});
    return {userpipe::async_reader(a, std::move(r)), userpipe::async_writer(b, std::move(w))};
  }
};

struct kernel_streams {
  asio::readable_pipe in;
  asio::writable_pipe out;
  static kernel_streams make(asio::io_context& a, asio::io_context& b) {
    kernel_streams s{asio::readable_pipe(a), asio::writable_pipe(b)};
    asio::connect_pipe(s.in, s.out);
    return s;
  }
};

template <class Streams>
void one_thread(benchmark::State& state) {
  auto const chunk = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    asio::io_context io(1);
    auto s = Streams::make(io, io);
    std::uint64_t received = 0;
    asio::co_spawn(io, consume(s.in, chunk, received), asio::detached);
    asio::co_spawn(io, produce(s.out, chunk), asio::detached);
    io.run();
    if (received != bytes_per_iteration) state.SkipWithError("short transfer");
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes_per_iteration));
}

template <class Streams>
void two_threads(benchmark::State& state) {
  auto const chunk = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    asio::io_context io_in(1), io_out(1);
    auto s = Streams::make(io_in, io_out);
    std::uint64_t received = 0;
    asio::co_spawn(io_in, consume(s.in, chunk, received), asio::detached);
    asio::co_spawn(io_out, produce(s.out, chunk), asio::detached);
    std::thread writer([&] { io_out.run(); });
    io_in.run();
    writer.join();
    if (received != bytes_per_iteration) state.SkipWithError("short transfer");
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes_per_iteration));
}

void register_all() {
  for (std::size_t chunk : {std::size_t{65536}, std::size_t{4096}}) {
    std::string const row = "/" + std::to_string(chunk / 1024) + "KiB";
    benchmark::RegisterBenchmark(("asio_one_thread/userpipe" + row).c_str(), one_thread<userpipe_streams>)
        ->Arg(static_cast<std::int64_t>(chunk))
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("asio_one_thread/kernel_pipe" + row).c_str(), one_thread<kernel_streams>)
        ->Arg(static_cast<std::int64_t>(chunk))
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  for (std::size_t chunk : {std::size_t{65536}, std::size_t{4096}}) {
    std::string const row = "/" + std::to_string(chunk / 1024) + "KiB";
    benchmark::RegisterBenchmark(("asio_two_threads/userpipe" + row).c_str(), two_threads<userpipe_streams>)
        ->Arg(static_cast<std::int64_t>(chunk))
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("asio_two_threads/kernel_pipe" + row).c_str(), two_threads<kernel_streams>)
        ->Arg(static_cast<std::int64_t>(chunk))
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  return bench::run(argc, argv);
}
