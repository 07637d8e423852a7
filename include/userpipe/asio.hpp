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
// Layout: this header holds the two streams; the operations and the
// service live in userpipe/detail/asio_operation.hpp and asio_service.hpp,
// written against the Asio chosen in detail/asio_config.hpp.
//
// Boost.Asio: not supported. Debian's Boost 1.74 bundles Asio 1.18, which has
// no per-operation cancellation, and boost::system::error_code would need a
// second set of conversions; standalone Asio is what this is tested with.
#pragma once

#include <memory>
#include <type_traits>
#include <utility>

#include "userpipe/detail/asio_config.hpp"
#include "userpipe/detail/asio_operation.hpp"
#include "userpipe/detail/asio_service.hpp"
#include "userpipe/pipe.hpp"

namespace userpipe {

namespace asio_detail {

/// What async_reader and async_writer share: everything but the name of
/// their one operation.
template <class End, class Executor>
class basic_stream {
 public:
  using executor_type = Executor;

  /// Takes ownership of `end`. Any thread. Throws what the executor's
  /// service registration throws (std::bad_alloc).
  basic_stream(executor_type const& executor, End end)
      : executor_(executor),
        core_(std::make_shared<stream_core<End>>(context_of(executor_), std::move(end))) {}
  template <class Context>
  requires std::is_convertible_v<Context&, net::execution_context&> basic_stream(Context& context, End end)
      : basic_stream(context.get_executor(), std::move(end)) {}

  /// The moved-from stream keeps its executor (as Asio's own I/O objects
  /// do): get_executor() still answers, and an operation started on it
  /// completes there with bad_descriptor.
  basic_stream(basic_stream&& other) noexcept : executor_(other.executor_), core_(std::move(other.core_)) {}
  basic_stream& operator=(basic_stream&& other) noexcept {
    if (this != &other) {
      close();
      executor_ = other.executor_;
      core_ = std::move(other.core_);
    }
    return *this;
  }
  ~basic_stream() { close(); }

  /// Any thread. Never blocks or throws.
  executor_type get_executor() const noexcept { return executor_; }
  bool is_open() const noexcept { return core_ && core_->end.is_open(); }

  /// Closes the end (the peer sees it as a kernel pipe's close); a pending
  /// operation completes with operation_aborted. Never blocks or throws.
  void close() noexcept {
    if (core_) core_->end.close();
  }

  /// The pending operation, if any, completes with operation_aborted and
  /// moves no byte. Call from the stream's executor.
  void cancel() noexcept {
    if (core_ && core_->parked != nullptr) core_->parked->cancel(net::cancellation_type::all);
  }

  /// The end itself, e.g. for stats() or a blocking call while no
  /// operation is pending. The stream must not be moved-from.
  End& pipe_end() noexcept { return core_->end; }

  /// Gives the end back (the stream is left without one). No operation may
  /// be pending. The stream must not be moved-from.
  End release() noexcept { return std::move(core_->end); }

 protected:
  /// What async_read_some / async_write_some hand to async_initiate.
  initiate_transfer<End, Executor> initiation() const noexcept { return {executor_, core_}; }

 private:
  Executor executor_;
  std::shared_ptr<stream_core<End>> core_;
};

}  // namespace asio_detail

/// The reading end as an Asio AsyncReadStream. Concepts: AsyncReadStream.
/// Distinct objects: safe. Shared objects: unsafe.
template <class Executor = asio::any_io_executor>
class basic_async_reader : public asio_detail::basic_stream<reader, Executor> {
 public:
  using executor_type = Executor;
  template <class Other>
  struct rebind_executor {
    using other = basic_async_reader<Other>;
  };

  /// (executor, reader) or (execution context, reader): takes ownership of
  /// the end. Any thread. Throws std::bad_alloc.
  using asio_detail::basic_stream<reader, Executor>::basic_stream;

  /// Reads at least one byte into `buffers`, waiting (without a thread)
  /// while the pipe is empty. Completion: void(std::error_code, std::size_t);
  /// eof after the last byte, operation_aborted if cancelled or closed.
  template <class MutableBufferSequence, class Token = asio::default_completion_token_t<executor_type>>
  auto async_read_some(MutableBufferSequence const& buffers,
                       Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(std::error_code, std::size_t)>(this->initiation(), token,
                                                                           buffers);
  }
};

/// The writing end as an Asio AsyncWriteStream. Concepts: AsyncWriteStream.
/// Distinct objects: safe. Shared objects: unsafe.
template <class Executor = asio::any_io_executor>
class basic_async_writer : public asio_detail::basic_stream<writer, Executor> {
 public:
  using executor_type = Executor;
  template <class Other>
  struct rebind_executor {
    using other = basic_async_writer<Other>;
  };

  /// (executor, writer) or (execution context, writer): takes ownership of
  /// the end. Any thread. Throws std::bad_alloc.
  using asio_detail::basic_stream<writer, Executor>::basic_stream;

  /// Writes at least one byte of `buffers`, waiting (without a thread)
  /// while the pipe is full. Completion: void(std::error_code, std::size_t);
  /// broken_pipe once the reader is gone, operation_aborted if cancelled or
  /// closed.
  template <class ConstBufferSequence, class Token = asio::default_completion_token_t<executor_type>>
  auto async_write_some(ConstBufferSequence const& buffers,
                        Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(std::error_code, std::size_t)>(this->initiation(), token,
                                                                           buffers);
  }
};

using async_reader = basic_async_reader<>;
using async_writer = basic_async_writer<>;

}  // namespace userpipe
