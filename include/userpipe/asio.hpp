// userpipe/asio.hpp — the two ends of a userpipe as Asio async streams.
//
// async_reader models AsyncReadStream, async_writer AsyncWriteStream
// (standalone Asio >= 1.22). Every completion token works (callbacks,
// use_awaitable, experimental::deferred, use_future, as_tuple...), and so do
// asio::async_read, async_write and async_read_until:
//
//   auto [r, w] = userpipe::make_pipe();
//   userpipe::async_reader in(io.get_executor(), std::move(r));
//   userpipe::async_writer out(io.get_executor(), std::move(w));
//   co_await asio::async_write(out, asio::buffer(msg), asio::use_awaitable);
//   n = co_await asio::async_read_until(in, dyn_buf, '\n', asio::use_awaitable);
//
// Ownership: a stream owns its end (like a socket owns its descriptor);
// destroying the stream closes the end. release() hands the end back.
//
// How an operation waits: it first tries the ring. If the pipe is empty (or
// full) it parks a callback in the end (reader::park / writer::park, the
// same wait slot a blocking thread sleeps on); the peer's commit, consume or
// close then posts the operation back to the stream's executor, which
// retries. A parked operation costs no thread and holds work on the
// stream's executor and on the handler's associated executor. So the two
// ends may run on one io_context thread (like fibers), on different threads
// or io_contexts, or one end may be a plain blocking reader/writer.
//
// Completions: bytes moved -> (success, n); end-of-file -> asio::error::eof;
// write with the reader gone -> asio::error::broken_pipe (or the reason the
// reader closed with, unchanged; likewise the writer's for a read); a
// zero-size operation -> (success, 0) at once; the stream closed or
// destroyed, or the operation cancelled -> operation_aborted with 0 bytes
// (no byte is consumed by an aborted operation); an operation started on a
// closed or moved-from stream -> bad_descriptor. The handler is never
// invoked inside the initiating call.
//
// Cancellation: per operation through the handler's cancellation slot
// (terminal, partial and total all apply, since an aborted operation has
// moved nothing), and cancel() for the pending operation. Emit cancellation
// from the stream's executor, as for Asio's own objects.
//
// Thread safety: Distinct objects: safe. Shared objects: unsafe; at most one
// read (one write) outstanding per stream; on a multi-threaded io_context use
// a strand as the stream's executor.
//
// Teardown: a stream should be destroyed before its execution context, as
// Asio's own I/O objects. Destroying the context with operations parked
// destroys them (their handlers, e.g. coroutine frames) without invoking
// them and withdraws their parks, so a peer that commits later calls
// nothing; a peer inside the wake callback at that moment is waited for
// (unpark and close return only once no callback of the end is running).
//
// Layout: the streams are in userpipe/detail/asio_streams.hpp, the
// operations and the service in detail/asio_operation.hpp and
// asio_service.hpp, all written against the Asio detail/asio_config.hpp
// chooses.
//
// Boost.Asio: userpipe/boost_asio.hpp is the same implementation compiled
// against Boost.Asio (>= 1.80): userpipe::boost_asio::async_reader and
// async_writer, completing with boost::system::error_code. A program may
// include both headers.
#pragma once

#include <memory>
#include <system_error>
#include <type_traits>
#include <utility>

#include "userpipe/pipe.hpp"

#define USERPIPE_ASIO_BOOST 0
#include "userpipe/detail/asio_config.hpp"
// clang-format off
#include "userpipe/detail/asio_service.hpp"
#include "userpipe/detail/asio_operation.hpp"
#include "userpipe/detail/asio_streams.hpp"
// clang-format on
#include "userpipe/detail/asio_unconfig.hpp"
