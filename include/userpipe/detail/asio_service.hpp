// userpipe/detail/asio_service.hpp — what a stream shares with its pending
// operation (stream_core), and the per-context service that destroys parked
// operations when the execution context shuts down. See userpipe/asio.hpp.
// No include guard: part of the implementation detail/asio_config.hpp
// describes, included once per spelling.

#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>

namespace userpipe::USERPIPE_ASIO_DETAIL {

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
class pipe_service : public net::execution_context::service {
 public:
  static inline net::execution_context::id id;

  explicit pipe_service(net::execution_context& context) : net::execution_context::service(context) {}

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
/// Registered with the service of the context it was made for.
template <class End>
class stream_core final : public core_base {
 public:
  stream_core(net::execution_context& context, End e) : end(std::move(e)) {
    net::use_service<pipe_service>(context).add(this);
  }
  ~stream_core() override {
    if (service_ != nullptr) service_->remove(this);
  }
  stream_core(stream_core const&) = delete;
  stream_core& operator=(stream_core const&) = delete;

  void shutdown() noexcept override;  // asio_operation.hpp

  End end;
  operation<End>* parked = nullptr;  // the operation whose callback may be parked in `end`
};

/// The execution context an executor (new-style or old-style) belongs to.
inline net::execution_context& context_of(auto const& executor) {
  if constexpr (net::execution::is_executor<std::decay_t<decltype(executor)>>::value)
    return net::query(executor, net::execution::context);
  else
    return executor.context();
}

}  // namespace userpipe::USERPIPE_ASIO_DETAIL
