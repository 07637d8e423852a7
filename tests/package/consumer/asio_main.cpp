// Built against userpipe::asio only (or, with USERPIPE_CONSUMER_BOOST,
// userpipe::boost_asio only): a coroutine writes a line through the pipe,
// another reads it back.
#ifdef USERPIPE_CONSUMER_BOOST
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <userpipe/boost_asio.hpp>
namespace asio = boost::asio;
namespace up = userpipe::boost_asio;
#else
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/read_until.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <userpipe/asio.hpp>
namespace up = userpipe;
#endif

#include <string>

int main() {
  asio::io_context io;
  auto [r, w] = userpipe::make_pipe({.capacity = 16});
  up::async_reader in(io, std::move(r));
  up::async_writer out(io, std::move(w));
  std::string line;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        co_await asio::async_write(out, asio::buffer(std::string_view("consumed\n")), asio::use_awaitable);
        out.close();
      },
      asio::detached);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        std::size_t const n = co_await asio::async_read_until(in, asio::dynamic_buffer(line), '\n', asio::use_awaitable);
        line.resize(n - 1);
      },
      asio::detached);
  io.run();
  return line == "consumed" ? 0 : 1;
}
