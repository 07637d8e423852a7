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
// reader closed with, unchanged; likewise the writer's for a read); a zero-size operation -> (success, 0) at once; the stream
// closed or destroyed, or the operation cancelled -> operation_aborted with
// 0 bytes (no byte is consumed by an aborted operation). The handler is never
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
// Boost.Asio: not supported. Debian's Boost 1.74 bundles Asio 1.18, which has
// no per-operation cancellation, and boost::system::error_code would need a
// second set of conversions; standalone Asio is what this is tested with.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/associated_allocator.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/buffer.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/dispatch.hpp>
#include <asio/error.hpp>
#include <asio/execution.hpp>
#include <asio/execution_context.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <mutex>
#include <span>
#include <system_error>
#include <type_traits>
#include <utility>

#include "userpipe/pipe.hpp"

namespace userpipe {

namespace asio_detail {

/// userpipe's own codes are std::errc (generic_category); Asio users compare
/// with asio::error::*, which Asio's sockets report in its own category. The
/// two userpipe makes up (reader gone, end closed) are translated; a reason
/// a user closed an end with reaches the peer unchanged.
inline std::error_code to_asio(std::error_code ec) noexcept {
  if (ec == std::make_error_code(std::errc::broken_pipe)) return asio::error::broken_pipe;
  if (ec == std::make_error_code(std::errc::bad_file_descriptor)) return asio::error::bad_descriptor;
  return ec;
}

class pipe_service;

/// What the service tracks per stream: enough to withdraw and destroy a
/// parked operation when the execution context shuts down.
class core_base {
 public:
  virtual ~core_base() = default;
  /// Withdraws the parked operation, if any, and destroys it uninvoked.
  /// `this` may be destroyed by it (the operation may own the stream).
  virtual void shutdown() noexcept = 0;

 private:
  friend class pipe_service;
  core_base* prev_ = nullptr;
  core_base* next_ = nullptr;

 protected:
  pipe_service* service_ = nullptr;  // null once detached by shutdown
};

/// One per execution context: Asio calls shutdown() before it destroys the
/// context's queued handlers, which is the last moment a parked operation
/// (known to no queue) can be destroyed.
class pipe_service : public asio::execution_context::service {
 public:
  static inline asio::execution_context::id id;

  explicit pipe_service(asio::execution_context& context) : asio::execution_context::service(context) {}

  void add(core_base* core) {
    std::lock_guard lock(mutex_);
    core->service_ = this;
    core->next_ = first_;
    if (first_ != nullptr) first_->prev_ = core;
    first_ = core;
  }

  void remove(core_base* core) noexcept {
    std::lock_guard lock(mutex_);
    unlink(core);
  }

 private:
  void unlink(core_base* core) noexcept {
    if (core->prev_ != nullptr) core->prev_->next_ = core->next_;
    if (core->next_ != nullptr) core->next_->prev_ = core->prev_;
    if (first_ == core) first_ = core->next_;
    core->prev_ = core->next_ = nullptr;
    core->service_ = nullptr;
  }

  void shutdown() override {
    for (;;) {
      core_base* core;
      {
        std::lock_guard lock(mutex_);
        if ((core = first_) == nullptr) return;
        unlink(core);
      }
      // Outside the lock: destroying an operation may destroy streams,
      // whose cores then remove themselves.
      core->shutdown();
    }
  }

  std::mutex mutex_;
  core_base* first_ = nullptr;
};

template <class End>
class operation;

/// The part of a stream that a pending operation shares: it outlives the
/// stream object while an operation that was already woken is queued.
template <class End>
class stream_core final : public core_base {
 public:
  explicit stream_core(End e) : end(std::move(e)) {}
  ~stream_core() override {
    if (service_ != nullptr) service_->remove(this);
  }
  void shutdown() noexcept override;

  End end;
  operation<End>* parked = nullptr;  // the operation whose callback may be parked in `end`
};

template <class End>
class operation {
 public:
  explicit operation(std::shared_ptr<stream_core<End>> core) noexcept : core_(std::move(core)) {}

  /// Destroys the operation without invoking its handler.
  virtual void destroy() noexcept = 0;
  /// On the stream's executor: retry, park again, or complete.
  virtual void resume() = 0;
  /// Posts resume() to the stream's executor. Called by the wake callback
  /// on the peer's thread, so noexcept (an allocation failure terminates).
  virtual void post_resume() noexcept = 0;

  /// The wake_callback given to park.
  static void on_ready(void* self) noexcept { static_cast<operation*>(self)->post_resume(); }

  void cancel(asio::cancellation_type type) noexcept {
    if ((type & (asio::cancellation_type::terminal | asio::cancellation_type::partial |
                 asio::cancellation_type::total)) == asio::cancellation_type::none)
      return;
    cancelled_ = true;
    // Withdrawn: nobody else will post us, so we do. Not withdrawn: the
    // peer's wake already posted us, and resume() sees cancelled_ before
    // it moves a byte.
    if (core_->parked == this && core_->end.unpark()) {
      core_->parked = nullptr;
      post_resume();
    }
  }

 protected:
  ~operation() {
    if (core_->parked == this) core_->parked = nullptr;
  }

  std::shared_ptr<stream_core<End>> core_;  // first: destroyed last
  bool cancelled_ = false;
};

template <class End>
void stream_core<End>::shutdown() noexcept {
  // Called even with nothing parked: unpark() also waits for a peer still
  // inside the wake callback of an operation that has already run, which
  // is about to return from its post into this very context.
  if (end.unpark() && parked != nullptr) {
    auto* op = std::exchange(parked, nullptr);
    op->destroy();  // may destroy *this
  }
}

/// A handler with its arguments bound, keeping the handler's associated
/// executor and allocator (asio::post/dispatch look them up).
template <class Handler>
struct bound_handler {
  Handler handler;
  std::error_code ec;
  std::size_t n;
  void operator()() { std::move(handler)(ec, n); }
};

/// The same without the associators (see post_completion).
template <class Handler>
struct plain_bound_handler {
  Handler handler;
  std::error_code ec;
  std::size_t n;
  void operator()() { std::move(handler)(ec, n); }
};

/// True if the handler completes on the stream's executor itself.
template <class Handler, class IoExecutor>
bool same_executor(Handler const& handler, IoExecutor const& io) noexcept {
  if constexpr (std::is_same_v<asio::associated_executor_t<Handler, IoExecutor>, IoExecutor>)
    return asio::get_associated_executor(handler, io) == io;
  else
    return false;
}

/// Owns a woken operation on its way through the executor's queue: if the
/// queue is destroyed first, the operation is destroyed, not leaked.
template <class End>
class resume_handle {
 public:
  explicit resume_handle(operation<End>* op) noexcept : op_(op) {}
  resume_handle(resume_handle&& other) noexcept : op_(std::exchange(other.op_, nullptr)) {}
  resume_handle& operator=(resume_handle&&) = delete;
  ~resume_handle() {
    if (op_ != nullptr) op_->destroy();
  }
  void operator()() { std::exchange(op_, nullptr)->resume(); }

 private:
  operation<End>* op_;
};

// ---- moving bytes between the ring and a buffer sequence -------------------

template <class Buffers>
std::size_t transfer(reader& end, Buffers const& buffers, std::error_code& ec) noexcept {
  std::size_t total = 0;
  ec.clear();
  for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers); ++it) {
    asio::mutable_buffer b(*it);
    if (b.size() == 0) continue;
    std::size_t const n = end.try_read_some(std::span(static_cast<std::byte*>(b.data()), b.size()), ec);
    total += n;
    if (ec || n < b.size()) break;
  }
  if (total != 0) {
    ec.clear();
  } else if (!ec) {
    ec = asio::error::eof;
  } else if (ec != std::errc::resource_unavailable_try_again) {
    ec = to_asio(ec);
  }
  return total;
}

template <class Buffers>
std::size_t transfer(writer& end, Buffers const& buffers, std::error_code& ec) noexcept {
  std::size_t total = 0;
  ec.clear();
  for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers); ++it) {
    asio::const_buffer b(*it);
    if (b.size() == 0) continue;
    std::size_t const n = end.try_write_some(std::span(static_cast<std::byte const*>(b.data()), b.size()), ec);
    total += n;
    if (ec || n < b.size()) break;
  }
  if (total != 0) {
    ec.clear();
  } else if (ec && ec != std::errc::resource_unavailable_try_again) {
    ec = to_asio(ec);
  }
  return total;
}

/// How much a parked operation waits for: a reader one byte; a writer room
/// for its data, but at most half the ring so that a large write moves in
/// half-ring steps while the reader drains (the blocking writer's rule).
inline std::size_t park_want(reader const&, std::size_t) noexcept { return 1; }
inline std::size_t park_want(writer const& w, std::size_t size) noexcept {
  return std::max<std::size_t>(1, std::min(size, w.capacity() / 2));
}

/// A parked read or write: the handler, its buffers, and the work it holds.
template <class End, class Buffers, class Handler, class IoExecutor>
class stream_operation final : public operation<End> {
  using handler_executor = asio::associated_executor_t<Handler, IoExecutor>;
  using allocator = typename std::allocator_traits<asio::associated_allocator_t<Handler>>::template rebind_alloc<
      stream_operation>;

  struct cancel_handler {
    stream_operation* op;
    void operator()(asio::cancellation_type type) noexcept { op->cancel(type); }
  };

 public:
  template <class H>
  static stream_operation* create(std::shared_ptr<stream_core<End>> core, Buffers const& buffers, H&& handler,
                                  IoExecutor const& io) {
    allocator alloc(asio::get_associated_allocator(handler));
    auto* p = std::allocator_traits<allocator>::allocate(alloc, 1);
    try {
      return ::new (static_cast<void*>(p)) stream_operation(std::move(core), buffers, std::forward<H>(handler), io);
    } catch (...) {
      std::allocator_traits<allocator>::deallocate(alloc, p, 1);
      throw;
    }
  }

  /// In the initiating call: post the first try. Parking costs the heavy
  /// barrier of the wait protocol (detail/wait.hpp, a system call); one
  /// trip through the executor first lets a peer on the same thread (two
  /// coroutines on one io_context) catch up, so an operation parks only
  /// when that trip found the peer still behind.
  void start() {
    auto slot = asio::get_associated_cancellation_slot(handler_);
    if (slot.is_connected()) {
      try {
        slot.template emplace<cancel_handler>(cancel_handler{this});
      } catch (...) {
        destroy();
        throw;
      }
    }
    post_resume();
  }

  void resume() override {
    auto& end = this->core_->end;
    for (;;) {
      this->core_->parked = nullptr;
      if (this->cancelled_ || !end.is_open()) return complete(asio::error::operation_aborted, 0);
      std::error_code ec;
      std::size_t const n = transfer(end, buffers_, ec);
      if (ec != std::errc::resource_unavailable_try_again) return complete(ec, n);
      if (park()) return;  // from here on another thread may own *this
    }
  }

  void post_resume() noexcept override {
    asio::post(io_work_.get_executor(), resume_handle<End>(this));
  }

  void destroy() noexcept override {
    auto slot = asio::get_associated_cancellation_slot(handler_);
    if (slot.is_connected()) slot.clear();
    free(allocator(asio::get_associated_allocator(handler_)));
  }

 private:
  template <class H>
  stream_operation(std::shared_ptr<stream_core<End>> core, Buffers const& buffers, H&& handler, IoExecutor const& io)
      : operation<End>(std::move(core)),
        buffers_(buffers),
        handler_(std::forward<H>(handler)),
        io_work_(asio::make_work_guard(io)),
        handler_work_(asio::make_work_guard(asio::get_associated_executor(handler_, io))),
        on_io_executor_(same_executor(handler_, io)) {}

  ~stream_operation() = default;

  /// The handler may be moved from: take the allocator before.
  void free(allocator alloc) noexcept {
    this->~stream_operation();
    std::allocator_traits<allocator>::deallocate(alloc, this, 1);
  }

  bool park() noexcept {
    this->core_->parked = this;
    if (this->core_->end.park(park_want(this->core_->end, asio::buffer_size(buffers_)), &operation<End>::on_ready,
                              this))
      return true;
    this->core_->parked = nullptr;
    return false;
  }

  /// On the stream's executor, outside any initiating call: free the
  /// operation, then run the handler on its own executor (at once if that
  /// is the one we are on).
  void complete(std::error_code ec, std::size_t n) {
    auto slot = asio::get_associated_cancellation_slot(handler_);
    if (slot.is_connected()) slot.clear();
    allocator alloc(asio::get_associated_allocator(handler_));
    bound_handler<Handler> bound{std::move(handler_), ec, n};
    auto io_work = std::move(io_work_);
    auto handler_work = std::move(handler_work_);
    bool const on_io_executor = on_io_executor_;
    free(alloc);
    if (on_io_executor) return std::move(bound)();  // we run on its executor: what dispatch would do
    asio::dispatch(handler_work.get_executor(), std::move(bound));
  }

  Buffers buffers_;
  Handler handler_;
  asio::executor_work_guard<IoExecutor> io_work_;
  asio::executor_work_guard<handler_executor> handler_work_;
  bool on_io_executor_;  // the handler's executor is the stream's
};

/// Completes an operation that needs no waiting: posted, never inline.
/// A handler whose executor is the stream's own is posted without its
/// associators, sparing the hop through a second (identical) executor.
template <class Handler, class IoExecutor>
void post_completion(IoExecutor const& io, Handler&& handler, std::error_code ec, std::size_t n) {
  using handler_type = std::decay_t<Handler>;
  if (same_executor(handler, io))
    asio::post(io, plain_bound_handler<handler_type>{std::forward<Handler>(handler), ec, n});
  else
    asio::post(io, bound_handler<handler_type>{std::forward<Handler>(handler), ec, n});
}

inline asio::execution_context& context_of(auto const& executor) {
  if constexpr (asio::execution::is_executor<std::decay_t<decltype(executor)>>::value)
    return asio::query(executor, asio::execution::context);
  else
    return executor.context();
}

/// What async_reader and async_writer share.
template <class End, class Executor>
class basic_stream {
 public:
  using executor_type = Executor;

  basic_stream(executor_type const& executor, End end)
      : executor_(executor), core_(std::make_shared<stream_core<End>>(std::move(end))) {
    asio::use_service<pipe_service>(context_of(executor_)).add(core_.get());
  }
  basic_stream(basic_stream&&) noexcept = default;
  basic_stream& operator=(basic_stream&& other) noexcept {
    if (this != &other) {
      close();
      executor_ = std::move(other.executor_);
      core_ = std::move(other.core_);
    }
    return *this;
  }
  ~basic_stream() { close(); }

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
    if (core_ && core_->parked != nullptr) core_->parked->cancel(asio::cancellation_type::all);
  }

  /// The end itself, e.g. for stats() or a blocking call while no
  /// operation is pending.
  End& pipe_end() noexcept { return core_->end; }

  /// Gives the end back (the stream is left without one). No operation may
  /// be pending.
  End release() noexcept { return std::move(core_->end); }

 protected:
  template <class Buffers, class Handler>
  void initiate(Buffers const& buffers, Handler&& handler) {
    std::error_code ec;
    if (!core_ || !core_->end.is_open())
      return post_completion(executor_, std::forward<Handler>(handler), asio::error::bad_descriptor, 0);
    if (asio::buffer_size(buffers) == 0) return post_completion(executor_, std::forward<Handler>(handler), ec, 0);
    std::size_t const n = transfer(core_->end, buffers, ec);
    if (ec != std::errc::resource_unavailable_try_again)
      return post_completion(executor_, std::forward<Handler>(handler), ec, n);
    using op_type = stream_operation<End, Buffers, std::decay_t<Handler>, Executor>;
    op_type::create(core_, buffers, std::forward<Handler>(handler), executor_)->start();
  }

  Executor executor_;
  std::shared_ptr<stream_core<End>> core_;
};

}  // namespace asio_detail

/// The reading end as an Asio AsyncReadStream. Concepts: AsyncReadStream.
/// Distinct objects: safe. Shared objects: unsafe.
template <class Executor = asio::any_io_executor>
class basic_async_reader : public asio_detail::basic_stream<reader, Executor> {
  using base = asio_detail::basic_stream<reader, Executor>;

 public:
  using executor_type = Executor;
  template <class Other>
  struct rebind_executor {
    using other = basic_async_reader<Other>;
  };

  /// Takes ownership of `end`. Any thread. Throws what the executor's
  /// service registration throws (std::bad_alloc).
  basic_async_reader(executor_type const& executor, reader end) : base(executor, std::move(end)) {}
  template <class Context>
    requires std::is_convertible_v<Context&, asio::execution_context&>
  basic_async_reader(Context& context, reader end) : base(context.get_executor(), std::move(end)) {}

  /// Reads at least one byte into `buffers`, waiting (without a thread)
  /// while the pipe is empty. Completion: void(std::error_code, std::size_t);
  /// eof after the last byte, operation_aborted if cancelled or closed.
  template <class MutableBufferSequence,
            class Token = asio::default_completion_token_t<executor_type>>
  auto async_read_some(MutableBufferSequence const& buffers,
                       Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(std::error_code, std::size_t)>(
        [this](auto&& handler, MutableBufferSequence const& b) {
          this->initiate(b, std::forward<decltype(handler)>(handler));
        },
        token, buffers);
  }
};

/// The writing end as an Asio AsyncWriteStream. Concepts: AsyncWriteStream.
/// Distinct objects: safe. Shared objects: unsafe.
template <class Executor = asio::any_io_executor>
class basic_async_writer : public asio_detail::basic_stream<writer, Executor> {
  using base = asio_detail::basic_stream<writer, Executor>;

 public:
  using executor_type = Executor;
  template <class Other>
  struct rebind_executor {
    using other = basic_async_writer<Other>;
  };

  basic_async_writer(executor_type const& executor, writer end) : base(executor, std::move(end)) {}
  template <class Context>
    requires std::is_convertible_v<Context&, asio::execution_context&>
  basic_async_writer(Context& context, writer end) : base(context.get_executor(), std::move(end)) {}

  /// Writes at least one byte of `buffers`, waiting (without a thread)
  /// while the pipe is full. Completion: void(std::error_code, std::size_t);
  /// broken_pipe once the reader is gone, operation_aborted if cancelled or
  /// closed.
  template <class ConstBufferSequence,
            class Token = asio::default_completion_token_t<executor_type>>
  auto async_write_some(ConstBufferSequence const& buffers,
                        Token&& token = asio::default_completion_token_t<executor_type>()) {
    return asio::async_initiate<Token, void(std::error_code, std::size_t)>(
        [this](auto&& handler, ConstBufferSequence const& b) {
          this->initiate(b, std::forward<decltype(handler)>(handler));
        },
        token, buffers);
  }
};

using async_reader = basic_async_reader<>;
using async_writer = basic_async_writer<>;

}  // namespace userpipe

// Asio looks up a bound handler's executor and allocator: forward them to
// the handler it wraps, so that completions run where the handler wants.
namespace asio {
template <class Handler, class Executor>
struct associated_executor<userpipe::asio_detail::bound_handler<Handler>, Executor>
    : associated_executor<Handler, Executor> {
  static auto get(userpipe::asio_detail::bound_handler<Handler> const& h, Executor const& ex = Executor()) noexcept {
    return associated_executor<Handler, Executor>::get(h.handler, ex);
  }
};
template <class Handler, class Allocator>
struct associated_allocator<userpipe::asio_detail::bound_handler<Handler>, Allocator>
    : associated_allocator<Handler, Allocator> {
  static auto get(userpipe::asio_detail::bound_handler<Handler> const& h, Allocator const& a = Allocator()) noexcept {
    return associated_allocator<Handler, Allocator>::get(h.handler, a);
  }
};
}  // namespace asio
