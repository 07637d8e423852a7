// userpipe/asio_process.hpp — child processes and fd pumps on an Asio event
// loop: the pumps of userpipe/process.hpp and userpipe/fd.hpp without a
// thread each.
//
//   asio::io_context io;
//   auto child = userpipe::spawn(io, {"sh"}, {.terminal = {{.rows = 24, .cols = 80}}});
//   userpipe::async_reader screen(io, std::move(child.out()));
//   userpipe::async_writer keys(io, std::move(child.in()));
//   ... co_await asio::async_read(screen, ...); co_await child_exit ...
//   io.run();
//
// spawn(executor-or-context, argv, opts) starts the same child as
// userpipe::spawn(argv, opts) and returns the same userpipe::child, whose
// in()/out()/err() are the same plain ends with the same behaviour (EOF,
// broken_pipe, closing, the terminal's hang-up, destroying the handle);
// only who moves the bytes differs: instead of a thread per stream, each
// kernel descriptor is an asio::posix::stream_descriptor and each ring end
// an async end (userpipe/asio.hpp), and the pumps are operations on a strand
// of the given executor. So 1,000 children cost no thread. The process's
// tests run over both modes (tests/process_test.cpp).
//
// The pumps hold work on the executor until their stream ends (the child
// closes its output, the handle goes): run() returns once every child's
// streams are done. Destroying the handle never blocks: it kills and reaps
// the child as ever, then asks the pumps (on their strand) to stop.
// SIGPIPE: the stdin pump writes with SIGPIPE blocked on the running thread
// (userpipe::detail::write_without_sigpipe), so a dead child's stdin is an
// error code, never a signal, without a thread of its own.
//
// async_pump(descriptor, async_writer, token) and async_pump(async_reader,
// descriptor, token) are userpipe::pump's two directions as operations, with
// pump's errors; completion void(std::error_code, std::uint64_t bytes). They
// put the descriptor in non-blocking mode and never close it. read(2) goes
// straight into the ring (try_prepare/commit between async_waits), write(2)
// straight out of it: one copy, as in thread mode.
//
// Boost.Asio: userpipe/boost_asio_process.hpp, the same in
// userpipe::boost_asio (completions with boost::system::error_code).
//
// async_wait_exit(executor, child, token) waits for a child's exit without
// a thread (a pidfd on the loop) and reaps it: completion
// void(std::error_code, exit_status).
//
// Threads: spawn from any thread; the ends follow pipe.hpp; the pumps run
// wherever the executor runs handlers, one at a time per child.
#pragma once

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <asio/async_result.hpp>
#include <asio/compose.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/strand.hpp>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

#include "userpipe/asio.hpp"
#include "userpipe/fd.hpp"
#include "userpipe/process.hpp"

#define USERPIPE_ASIO_BOOST 0
#include "userpipe/detail/asio_config.hpp"
#include "userpipe/detail/asio_pumps.hpp"
#include "userpipe/detail/asio_unconfig.hpp"
