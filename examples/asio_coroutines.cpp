// Two coroutines on one thread connected by a userpipe, the way fibers are
// connected by a pipe: the producer yields when the pipe is full, the
// consumer when it is empty, and nothing ever blocks the thread. A timer
// bounds each read, which shows per-operation cancellation losing no byte.
//
//   $ ./asio_coroutines
//   line 0: x
//   line 1: xx
//   line 2: xxx
//   (no line within 20 ms, still waiting)
//   (no line within 20 ms, still waiting)
//   line 3: xxxx
//   line 4: xxxxx
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/read_until.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <chrono>
#include <iostream>
#include <string>
#include <userpipe/asio.hpp>

using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;

asio::awaitable<void> produce(userpipe::async_writer out) {
  for (int i = 0; i < 5; ++i) {
    std::string line = "line " + std::to_string(i) + ": " + std::string(i + 1, 'x') + "\n";
    co_await asio::async_write(out, asio::buffer(line), asio::use_awaitable);
    // Take a while now and then: the consumer's timer fires meanwhile.
    if (i == 2) co_await asio::steady_timer(out.get_executor(), 50ms).async_wait(asio::use_awaitable);
  }
}  // `out` is destroyed here: the consumer gets end-of-file

asio::awaitable<void> consume(userpipe::async_reader in) {
  std::string data;
  for (;;) {
    asio::steady_timer timer(in.get_executor(), 20ms);
    // Whichever finishes first cancels the other; a cancelled read has
    // taken nothing from the pipe.
    auto result = co_await (asio::async_read_until(in, asio::dynamic_buffer(data), '\n',
                                                   asio::experimental::as_tuple(asio::use_awaitable)) ||
                            timer.async_wait(asio::use_awaitable));
    if (result.index() == 1) {
      std::cout << "(no line within 20 ms, still waiting)\n";
      continue;
    }
    auto [ec, n] = std::get<0>(result);
    if (ec == asio::error::eof) co_return;
    if (ec) throw std::system_error(ec);
    std::cout << data.substr(0, n);
    data.erase(0, n);
  }
}

int main() {
  asio::io_context io;
  auto [reader, writer] = userpipe::make_pipe({.capacity = 16});  // small, so the producer waits too
  asio::co_spawn(io, consume(userpipe::async_reader(io, std::move(reader))), asio::detached);
  asio::co_spawn(io, produce(userpipe::async_writer(io, std::move(writer))), asio::detached);
  io.run();
}
