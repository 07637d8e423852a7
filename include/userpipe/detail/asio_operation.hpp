// userpipe/detail/asio_operation.hpp — a read or write on a userpipe end as
// an Asio operation: the initiation, the parked operation and its
// completion. See userpipe/asio.hpp for the contract. No include guard:
// part of the implementation detail/asio_config.hpp describes, included
// once per spelling.

#include <algorithm>
#include <cstddef>
#include <memory>
#include <span>
#include <system_error>
#include <type_traits>
#include <utility>

#include "userpipe/pipe.hpp"

namespace userpipe::USERPIPE_ASIO_DETAIL {

/// userpipe's own codes are std::errc (generic_category); Asio users compare
/// with net::error::*, which Asio's sockets report in its own category. The
/// two userpipe makes up (reader gone, end closed) are translated; a reason
/// a user closed an end with reaches the peer unchanged (under Boost.Asio
/// wrapped in a boost::system::error_code, which compares equal to it).
inline error_code to_net(std::error_code ec) noexcept {
  if (!ec) return {};
  if (ec == std::make_error_code(std::errc::broken_pipe)) return net::error::broken_pipe;
  if (ec == std::make_error_code(std::errc::bad_file_descriptor)) return net::error::bad_descriptor;
  return error_code(ec);
}

// ---- the operation as the stream and the wake callback see it --------------

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

  void cancel(net::cancellation_type type) noexcept {
    if ((type & (net::cancellation_type::terminal | net::cancellation_type::partial |
                 net::cancellation_type::total)) == net::cancellation_type::none)
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

// ---- completion ------------------------------------------------------------

/// A handler with its arguments bound. With `Associated`, Asio sees every
/// associated trait of the handler it wraps (see the associator at the end
/// of this file), so that the completion runs where the handler wants;
/// without, the bound handler has none of its own (see post_completion).
template <class Handler, bool Associated = true>
struct bound_handler {
  Handler handler;
  error_code ec;
  std::size_t n;
  void operator()() { std::move(handler)(ec, n); }
};

/// True if the handler completes on the stream's executor itself.
template <class Handler, class IoExecutor>
bool same_executor(Handler const& handler, IoExecutor const& io) noexcept {
  if constexpr (std::is_same_v<net::associated_executor_t<Handler, IoExecutor>, IoExecutor>)
    return net::get_associated_executor(handler, io) == io;
  else
    return false;
}

/// Completes an operation that needs no waiting: posted, never inline.
/// A handler whose executor is the stream's own is posted without its
/// associators, sparing the hop through a second (identical) executor.
template <class Handler, class IoExecutor>
void post_completion(IoExecutor const& io, Handler&& handler, error_code ec, std::size_t n) {
  using handler_type = std::decay_t<Handler>;
  if (same_executor(handler, io))
    net::post(io, bound_handler<handler_type, false>{std::forward<Handler>(handler), ec, n});
  else
    net::post(io, bound_handler<handler_type>{std::forward<Handler>(handler), ec, n});
}

// ---- moving bytes between the ring and a buffer sequence -------------------

/// The "buffers" of async_wait: no byte moves; the operation completes once
/// `want` bytes could (a reader: one byte, or the end of the stream).
struct ready_only {
  std::size_t want = 1;
};

/// What one non-blocking attempt found: `blocked` if the operation must
/// wait; otherwise `ec` (net's codes, eof included) and the bytes moved.
struct attempt {
  std::size_t n = 0;
  error_code ec;
  bool blocked = false;
};

/// Maps a try_* outcome with nothing moved: try-again blocks, end-of-file
/// (a reader's empty success) is eof, anything else is translated.
inline attempt nothing_moved(std::error_code ec, bool reading) noexcept {
  if (ec == std::errc::resource_unavailable_try_again) return {0, {}, true};
  if (!ec) return {0, reading ? error_code(net::error::eof) : error_code(), false};
  return {0, to_net(ec), false};
}

template <class Buffers>
attempt transfer(reader& end, Buffers const& buffers) noexcept {
  std::size_t total = 0;
  std::error_code ec;
  for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers); ++it) {
    net::mutable_buffer b(*it);
    if (b.size() == 0) continue;
    std::size_t const n = end.try_read_some(std::span(static_cast<std::byte*>(b.data()), b.size()), ec);
    total += n;
    if (ec || n < b.size()) break;
  }
  if (total != 0) return {total, {}, false};
  return nothing_moved(ec, true);
}

template <class Buffers>
attempt transfer(writer& end, Buffers const& buffers) noexcept {
  std::size_t total = 0;
  std::error_code ec;
  for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers); ++it) {
    net::const_buffer b(*it);
    if (b.size() == 0) continue;
    std::size_t const n =
        end.try_write_some(std::span(static_cast<std::byte const*>(b.data()), b.size()), ec);
    total += n;
    if (ec || n < b.size()) break;
  }
  if (total != 0) return {total, {}, false};
  return nothing_moved(ec, false);
}

/// async_wait on a reader: ready with the contiguous readable bytes, or at
/// the end of the stream.
inline attempt transfer(reader& end, ready_only const&) noexcept {
  std::error_code ec;
  std::size_t const n = end.try_peek(ec).size();
  if (n != 0) return {n, {}, false};
  return nothing_moved(ec, true);
}

/// async_wait on a writer: ready once `want` contiguous bytes are free (or
/// the reader is gone).
inline attempt transfer(writer& end, ready_only const& r) noexcept {
  std::error_code ec;
  std::size_t const n = end.try_prepare(ec).size();
  if (ec) return nothing_moved(ec, false);
  if (n != 0 && n >= std::min(r.want, end.capacity())) return {n, {}, false};
  return {0, {}, true};
}

inline std::size_t size_of(ready_only const& r) noexcept { return r.want; }
template <class Buffers>
std::size_t size_of(Buffers const& buffers) noexcept {
  return net::buffer_size(buffers);
}

/// How much a parked operation waits for: a reader one byte; a writer room
/// for its data, but at most half the ring so that a large write moves in
/// half-ring steps while the reader drains (the blocking writer's rule); a
/// writer's async_wait what it asked for, at most the ring.
inline std::size_t park_want(reader const&, std::size_t) noexcept { return 1; }
inline std::size_t park_want(writer const& w, std::size_t size) noexcept {
  return std::max<std::size_t>(1, std::min(size, w.capacity() / 2));
}
inline std::size_t park_want(reader const&, ready_only const&) noexcept { return 1; }
inline std::size_t park_want(writer const& w, ready_only const& r) noexcept {
  return std::max<std::size_t>(1, std::min(r.want, w.capacity()));
}
template <class End, class Buffers>
std::size_t park_want(End const& end, Buffers const& buffers) noexcept {
  return park_want(end, net::buffer_size(buffers));
}

// ---- outstanding work ------------------------------------------------------

/// Keeps an executor's context from running out of work until destroyed,
/// and is the executor to post to. A standard executor (any_io_executor, a
/// strand of one, a thread_pool's) is asked for outstanding_work.tracked:
/// executor_work_guard would take it for the older kind whenever it merely
/// declares on_work_started, as strand<any_io_executor> does, and fail to
/// compile. executor_work_guard is left for an executor of only that kind.
template <class Executor>
class tracked_work {
  static auto track(Executor const& ex) {
    if constexpr (net::execution::is_executor<Executor>::value)
      return net::prefer(ex, net::execution::outstanding_work.tracked);
    else
      return net::make_work_guard(ex);
  }

 public:
  explicit tracked_work(Executor const& ex) : work_(track(ex)) {}

  auto const& executor() const noexcept {
    if constexpr (net::execution::is_executor<Executor>::value)
      return work_;
    else
      return work_.get_executor();
  }

 private:
  decltype(track(std::declval<Executor const&>())) work_;
};

// ---- the parked operation ---------------------------------------------------

/// A parked read or write: the handler, its buffers, and the work it holds.
template <class End, class Buffers, class Handler, class IoExecutor>
class stream_operation final : public operation<End> {
  using handler_executor = net::associated_executor_t<Handler, IoExecutor>;
  using allocator = typename std::allocator_traits<
      net::associated_allocator_t<Handler>>::template rebind_alloc<stream_operation>;

  struct cancel_handler {
    stream_operation* op;
    void operator()(net::cancellation_type type) noexcept { op->cancel(type); }
  };

 public:
  template <class H>
  static stream_operation* create(std::shared_ptr<stream_core<End>> core, Buffers const& buffers, H&& handler,
                                  IoExecutor const& io) {
    allocator alloc(net::get_associated_allocator(handler));
    auto* p = std::allocator_traits<allocator>::allocate(alloc, 1);
    try {
      return ::new (static_cast<void*>(p))
          stream_operation(std::move(core), buffers, std::forward<H>(handler), io);
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
    auto slot = net::get_associated_cancellation_slot(handler_);
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
      if (this->cancelled_ || !end.is_open()) return complete(net::error::operation_aborted, 0);
      attempt const a = transfer(end, buffers_);
      if (!a.blocked) return complete(a.ec, a.n);
      if (park()) return;  // from here on another thread may own *this
      // A wait the ring turned ready between the attempt and the park: the
      // next attempt may still find too little contiguous room (the free
      // bytes straddle the wrap), which park counts as ready.
      if constexpr (std::is_same_v<Buffers, ready_only>) return complete({}, 0);
    }
  }

  void post_resume() noexcept override { net::post(io_work_.executor(), resume_handle<End>(this)); }

  void destroy() noexcept override {
    auto slot = net::get_associated_cancellation_slot(handler_);
    if (slot.is_connected()) slot.clear();
    free(allocator(net::get_associated_allocator(handler_)));
  }

 private:
  template <class H>
  stream_operation(std::shared_ptr<stream_core<End>> core, Buffers const& buffers, H&& handler,
                   IoExecutor const& io)
      : operation<End>(std::move(core)),
        buffers_(buffers),
        handler_(std::forward<H>(handler)),
        io_work_(io),
        handler_work_(net::get_associated_executor(handler_, io)),
        on_io_executor_(same_executor(handler_, io)) {}

  ~stream_operation() = default;

  /// The handler may be moved from: take the allocator before.
  void free(allocator alloc) noexcept {
    this->~stream_operation();
    std::allocator_traits<allocator>::deallocate(alloc, this, 1);
  }

  bool park() noexcept {
    this->core_->parked = this;
    if (this->core_->end.park(park_want(this->core_->end, buffers_), &operation<End>::on_ready, this))
      return true;
    this->core_->parked = nullptr;
    return false;
  }

  /// On the stream's executor, outside any initiating call: free the
  /// operation, then run the handler on its own executor (at once if that
  /// is the one we are on).
  void complete(error_code ec, std::size_t n) {
    auto slot = net::get_associated_cancellation_slot(handler_);
    if (slot.is_connected()) slot.clear();
    allocator alloc(net::get_associated_allocator(handler_));
    bound_handler<Handler> bound{std::move(handler_), ec, n};
    auto io_work = std::move(io_work_);
    auto handler_work = std::move(handler_work_);
    bool const on_io_executor = on_io_executor_;
    free(alloc);
    if (on_io_executor) return std::move(bound)();  // we run on its executor: what dispatch would do
    net::dispatch(handler_work.executor(), std::move(bound));
  }

  Buffers buffers_;
  Handler handler_;
  tracked_work<IoExecutor> io_work_;
  tracked_work<handler_executor> handler_work_;
  bool on_io_executor_;  // the handler's executor is the stream's
};

// ---- initiation --------------------------------------------------------------

/// The initiation of async_read_some (End = reader) and async_write_some
/// (End = writer), a named class so that completion tokens can ask it for
/// the stream's executor. Holds the stream's executor and core by address:
/// async_initiate calls it before the initiating function returns.
template <class End, class Executor>
class initiate_transfer {
 public:
  using executor_type = Executor;

  initiate_transfer(Executor const& io, std::shared_ptr<stream_core<End>> const& core) noexcept
      : io_(&io), core_(&core) {}

  executor_type get_executor() const noexcept { return *io_; }

  /// Completes at once (posted) if the end is closed, the buffers are empty
  /// or the ring is ready; otherwise parks an operation.
  template <class Handler, class Buffers>
  void operator()(Handler&& handler, Buffers const& buffers) const {
    auto const& core = *core_;
    if (!core || !core->end.is_open())
      return post_completion(*io_, std::forward<Handler>(handler), net::error::bad_descriptor, 0);
    if (size_of(buffers) == 0) return post_completion(*io_, std::forward<Handler>(handler), error_code(), 0);
    attempt const a = transfer(core->end, buffers);
    if (!a.blocked) return post_completion(*io_, std::forward<Handler>(handler), a.ec, a.n);
    using op_type = stream_operation<End, Buffers, std::decay_t<Handler>, Executor>;
    op_type::create(core, buffers, std::forward<Handler>(handler), *io_)->start();
  }

 private:
  Executor const* io_;
  std::shared_ptr<stream_core<End>> const* core_;
};

}  // namespace userpipe::USERPIPE_ASIO_DETAIL

namespace USERPIPE_ASIO_NAMESPACE {

/// Every associated trait of a bound handler (executor, allocator,
/// cancellation slot, and whatever Asio adds) is the wrapped handler's.
template <template <class, class> class Associator, class Handler, class DefaultCandidate>
struct associator<Associator, userpipe::USERPIPE_ASIO_DETAIL::bound_handler<Handler, true>, DefaultCandidate>
    : Associator<Handler, DefaultCandidate> {
  static typename Associator<Handler, DefaultCandidate>::type get(
      userpipe::USERPIPE_ASIO_DETAIL::bound_handler<Handler, true> const& h,
      DefaultCandidate const& c = DefaultCandidate()) noexcept {
    return Associator<Handler, DefaultCandidate>::get(h.handler, c);
  }
};

}  // namespace USERPIPE_ASIO_NAMESPACE
