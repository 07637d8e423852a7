// userpipe/detail/asio_streams.hpp — the two stream classes, compiled once
// per Asio spelling (see detail/asio_config.hpp; the contract is in
// userpipe/asio.hpp). No include guard on purpose.

namespace userpipe::USERPIPE_ASIO_DETAIL {

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

  /// Waits (without a thread) until the end is ready, and moves nothing: a
  /// reader until a byte is readable or the stream has ended, a writer
  /// until `want` contiguous bytes are free (at most the ring) or the reader
  /// is gone. Completion: void(error_code, std::size_t ready): (success,
  /// bytes that try_peek / try_prepare now give), or what a read or write
  /// would complete with instead (eof, broken_pipe, a close reason,
  /// operation_aborted). For zero-copy loops over pipe_end()'s
  /// try_peek/consume and try_prepare/commit. Same rules as a read or write
  /// (one outstanding operation of either kind per stream).
  template <class Token = net::default_completion_token_t<Executor>>
  auto async_wait(std::size_t want, Token&& token = net::default_completion_token_t<Executor>()) {
    return net::async_initiate<Token, void(error_code, std::size_t)>(initiation(), token, ready_only{want});
  }
  template <class Token = net::default_completion_token_t<Executor>>
  requires(!std::is_integral_v<std::decay_t<Token>>) auto async_wait(
      Token&& token = net::default_completion_token_t<Executor>()) {
    return async_wait(1, std::forward<Token>(token));
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

}  // namespace userpipe::USERPIPE_ASIO_DETAIL

namespace USERPIPE_ASIO_PUBLIC {

/// The reading end as an Asio AsyncReadStream. Concepts: AsyncReadStream.
/// Distinct objects: safe. Shared objects: unsafe.
template <class Executor = ::USERPIPE_ASIO_NAMESPACE::any_io_executor>
class basic_async_reader : public ::userpipe::USERPIPE_ASIO_DETAIL::basic_stream<reader, Executor> {
 public:
  using executor_type = Executor;
  template <class Other>
  struct rebind_executor {
    using other = basic_async_reader<Other>;
  };

  /// (executor, reader) or (execution context, reader): takes ownership of
  /// the end. Any thread. Throws std::bad_alloc.
  using ::userpipe::USERPIPE_ASIO_DETAIL::basic_stream<reader, Executor>::basic_stream;

  /// Reads at least one byte into `buffers`, waiting (without a thread)
  /// while the pipe is empty. Completion: void(error_code, std::size_t);
  /// eof after the last byte, operation_aborted if cancelled or closed.
  template <class MutableBufferSequence,
            class Token = ::USERPIPE_ASIO_NAMESPACE::default_completion_token_t<executor_type>>
  auto async_read_some(
      MutableBufferSequence const& buffers,
      Token&& token = ::USERPIPE_ASIO_NAMESPACE::default_completion_token_t<executor_type>()) {
    return ::USERPIPE_ASIO_NAMESPACE::async_initiate<Token, void(::userpipe::USERPIPE_ASIO_DETAIL::error_code,
                                                                 std::size_t)>(this->initiation(), token,
                                                                               buffers);
  }
};

/// The writing end as an Asio AsyncWriteStream. Concepts: AsyncWriteStream.
/// Distinct objects: safe. Shared objects: unsafe.
template <class Executor = ::USERPIPE_ASIO_NAMESPACE::any_io_executor>
class basic_async_writer : public ::userpipe::USERPIPE_ASIO_DETAIL::basic_stream<writer, Executor> {
 public:
  using executor_type = Executor;
  template <class Other>
  struct rebind_executor {
    using other = basic_async_writer<Other>;
  };

  /// (executor, writer) or (execution context, writer): takes ownership of
  /// the end. Any thread. Throws std::bad_alloc.
  using ::userpipe::USERPIPE_ASIO_DETAIL::basic_stream<writer, Executor>::basic_stream;

  /// Writes at least one byte of `buffers`, waiting (without a thread)
  /// while the pipe is full. Completion: void(error_code, std::size_t);
  /// broken_pipe once the reader is gone, operation_aborted if cancelled or
  /// closed.
  template <class ConstBufferSequence,
            class Token = ::USERPIPE_ASIO_NAMESPACE::default_completion_token_t<executor_type>>
  auto async_write_some(
      ConstBufferSequence const& buffers,
      Token&& token = ::USERPIPE_ASIO_NAMESPACE::default_completion_token_t<executor_type>()) {
    return ::USERPIPE_ASIO_NAMESPACE::async_initiate<Token, void(::userpipe::USERPIPE_ASIO_DETAIL::error_code,
                                                                 std::size_t)>(this->initiation(), token,
                                                                               buffers);
  }
};

using async_reader = basic_async_reader<>;
using async_writer = basic_async_writer<>;

}  // namespace USERPIPE_ASIO_PUBLIC
