// userpipe/detail/asio_pumps.hpp — the event-loop pumps and spawn, compiled
// once per Asio spelling (see detail/asio_config.hpp; the contract is in
// userpipe/asio_process.hpp). No include guard on purpose.

namespace userpipe::USERPIPE_ASIO_DETAIL {

/// Completion code of a pump: the std::error_code the thread pumps report,
/// in the spelling's error_code (Boost wraps it; it compares equal).
inline error_code pump_code(std::error_code ec) noexcept { return error_code(ec); }

/// A read waits for this much room (or the whole ring) before read(2), as
/// the thread pump does (src/fd.cpp).
inline constexpr std::size_t pump_min_read = 4096;
/// Reads (writes) in a row before a pump yields the executor to others.
inline constexpr int pump_budget = 32;

/// fd -> ring: read(2) into the span try_prepare gives, commit; at EOF the
/// writer is closed. Waits on the descriptor (EAGAIN) or on the ring (full)
/// without a thread.
template <class Descriptor, class Writer>
class pump_in_op {
 public:
  pump_in_op(Descriptor& from, Writer& to, bool eio_is_eof) noexcept
      : from_(from), to_(to), eio_is_eof_(eio_is_eof) {}

  template <class Self>
  void operator()(Self& self, error_code ec = {}, std::size_t n = 0) {
    // Never complete inside the initiating call: start from the executor.
    if (!std::exchange(started_, true)) return net::post(to_.get_executor(), std::move(self));
    writer& w = to_.pipe_end();
    if (std::exchange(reading_, false)) {
      // The descriptor's own async_read_some, straight into the span.
      if (n > 0) {
        std::error_code ignored;
        w.commit(n, ignored);
        total_ += n;
        drained_ = looks_drained(n, asked_);
      } else if (ec == net::error::eof) {
        w.close();
        return self.complete({}, total_);
      } else if (ec == net::error::operation_aborted) {
        return finish(self, std::make_error_code(std::errc::operation_canceled));
      } else if (ec) {
        std::error_code const e(ec.value(), std::generic_category());  // errno, as read(2) gave it
        if (e.value() == EIO && eio_is_eof_) {
          w.close();
          return self.complete({}, total_);
        }
        return finish(self, e);
      }
    } else if (ec == net::error::operation_aborted) {
      return finish(self, std::make_error_code(std::errc::operation_canceled));
    }
    // Any other failed ring wait is reported again, exactly, by try_prepare.
    std::size_t const want = std::clamp<std::size_t>(w.capacity(), 1, pump_min_read);
    for (int round = 0;; ++round) {
      if (round == pump_budget) return net::post(to_.get_executor(), std::move(self));
      // Closed while this pump was queued (not waiting on it): a cancel.
      if (!from_.is_open()) return finish(self, std::make_error_code(std::errc::operation_canceled));
      std::error_code sec;
      std::span<std::byte> room = w.try_prepare(sec);
      if (sec) return self.complete(pump_code(sec), total_);  // the reader is gone: writer left open
      bool const after_wait = std::exchange(waited_ring_, false);
      if (room.empty() || (room.size() < want && !after_wait)) {
        waited_ring_ = true;
        return to_.async_wait(want, std::move(self));
      }
      // A pipe that gave less than asked was emptied: a read(2) now would
      // most likely say EAGAIN, and async_read_some would then try again
      // before it waits. Let that try of Asio's be the only one.
      if (std::exchange(drained_, false)) return read_when_ready(self, room);
      ssize_t n;
      do n = ::read(from_.native_handle(), room.data(), room.size());
      while (n < 0 && errno == EINTR);
      if (n > 0) {
        w.commit(static_cast<std::size_t>(n), sec);
        total_ += static_cast<std::uint64_t>(n);
        drained_ = looks_drained(static_cast<std::size_t>(n), room.size());
        continue;
      }
      int const e = n == 0 ? 0 : errno;
      if (n == 0 || (e == EIO && eio_is_eof_)) {
        w.close();
        return self.complete({}, total_);
      }
      // Not async_wait(wait_read): with several threads in the io_context,
      // the readiness edge may reach another thread's epoll_wait before the
      // wait is queued, and a wait op is never tried speculatively. Asio's
      // own read is, under the descriptor's lock: no edge is lost.
      if (e == EAGAIN || e == EWOULDBLOCK) return read_when_ready(self, room);
      return finish(self, std::error_code(e, std::generic_category()));
    }
  }

 private:
  /// Asio's read, straight into the span: it reads at once if it can (its
  /// speculative try), else once the descriptor is readable.
  template <class Self>
  void read_when_ready(Self& self, std::span<std::byte> room) {
    reading_ = true;
    asked_ = room.size();
    from_.async_read_some(net::buffer(room.data(), room.size()), std::move(self));
  }

  /// A short read empties a pipe or socket; a terminal hands out at most a
  /// line discipline's buffer per read, with more behind it.
  bool looks_drained(std::size_t got, std::size_t asked) const noexcept {
    return !eio_is_eof_ && got < asked;
  }

  /// Ends the pump with an error the reader sees after the bytes.
  template <class Self>
  void finish(Self& self, std::error_code ec) {
    to_.pipe_end().close(ec);
    self.complete(pump_code(ec), total_);
  }

  Descriptor& from_;
  Writer& to_;
  bool eio_is_eof_;
  bool started_ = false;
  bool reading_ = false;  // an async_read_some is what completes next
  bool waited_ring_ = false;
  bool drained_ = false;   // the last read was short: the next is Asio's
  std::size_t asked_ = 0;  // by the pending async_read_some
  std::uint64_t total_ = 0;
};

/// ring -> fd: write(2) from the span try_peek gives, consume; returns at
/// the ring's EOF, leaving the descriptor open.
template <class Reader, class Descriptor>
class pump_out_op {
 public:
  pump_out_op(Reader& from, Descriptor& to, bool terminal) noexcept
      : from_(from), to_(to), terminal_(terminal) {}

  template <class Self>
  void operator()(Self& self, error_code ec = {}, std::size_t n = 0) {
    if (!std::exchange(started_, true)) return net::post(from_.get_executor(), std::move(self));
    reader& r = from_.pipe_end();
    if (std::exchange(writing_, false)) {
      // A terminal's async_write_some, straight from the ring.
      std::error_code ignored;
      if (n > 0) r.consume(n, ignored), total_ += n;
      if (ec == net::error::operation_aborted) {
        r.close();
        return self.complete(pump_code(std::make_error_code(std::errc::operation_canceled)), total_);
      }
      if (ec)
        return fail(self, ec.value() == EIO ? std::make_error_code(std::errc::broken_pipe)
                                            : std::error_code(ec.value(), std::generic_category()));
      ec = {};
    }
    if (ec) {
      if (ec == net::error::operation_aborted || !r.is_open()) {
        r.close();
        return self.complete(pump_code(std::make_error_code(std::errc::operation_canceled)), total_);
      }
      if (!waited_ring_) return fail(self, static_cast<std::error_code>(ec));
    }
    waited_ring_ = false;
    for (int round = 0;; ++round) {
      if (round == pump_budget) return net::post(from_.get_executor(), std::move(self));
      if (!to_.is_open()) {
        r.close();
        return self.complete(pump_code(std::make_error_code(std::errc::operation_canceled)), total_);
      }
      std::error_code sec;
      std::span<std::byte const> data = r.try_peek(sec);
      if (sec == std::errc::resource_unavailable_try_again) {
        waited_ring_ = true;
        return from_.async_wait(std::move(self));
      }
      if (sec || data.empty())
        return self.complete(pump_code(sec), total_);  // the writer's close error, or EOF
      ssize_t const n = ::userpipe::detail::write_without_sigpipe(to_.native_handle(), data);
      if (n >= 0) {
        r.consume(static_cast<std::size_t>(n), sec);
        total_ += static_cast<std::uint64_t>(n);
        continue;
      }
      int const e = errno;
      if (e == EAGAIN || e == EWOULDBLOCK) {
        // A pty master raises no SIGPIPE, so Asio may write itself, which
        // (unlike a wait op) loses no readiness edge to another thread of
        // the io_context. A pipe or socket could raise SIGPIPE on whichever
        // thread runs the reactor: wait, then write here without it.
        if (terminal_) {
          writing_ = true;
          return to_.async_write_some(net::buffer(data.data(), data.size()), std::move(self));
        }
        return to_.async_wait(net::posix::descriptor_base::wait_write, std::move(self));
      }
      // Nobody reads the descriptor: a hung-up terminal says EIO, a pipe EPIPE.
      if (e == EPIPE || (e == EIO && terminal_))
        return fail(self, std::make_error_code(std::errc::broken_pipe));
      return fail(self, std::error_code(e, std::generic_category()));
    }
  }

 private:
  template <class Self>
  void fail(Self& self, std::error_code ec) {
    from_.pipe_end().close(ec);
    self.complete(pump_code(ec), total_);
  }

  Reader& from_;
  Descriptor& to_;
  bool terminal_;
  bool started_ = false;
  bool writing_ = false;  // an async_write_some is what completes next
  bool waited_ring_ = false;
  std::uint64_t total_ = 0;
};

/// Waits for a child's exit on a pidfd (readable once the child has
/// exited), then reaps it with try_wait.
template <class Executor>
class exit_wait_op {
 public:
  exit_wait_op(Executor ex, child& c) : ex_(std::move(ex)), child_(c) {}

  template <class Self>
  void operator()(Self& self, error_code ec = {}) {
    if (!std::exchange(started_, true)) return net::post(ex_, std::move(self));
    if (ec) return self.complete(ec, exit_status{});
    std::error_code sec;
    std::optional<exit_status> const status = child_.try_wait(sec);
    if (sec) return self.complete(error_code(sec), exit_status{});
    if (status) return self.complete(error_code(), *status);
    if (!pidfd_) {
      int const fd = static_cast<int>(::syscall(SYS_pidfd_open, child_.pid(), 0));
      if (fd < 0)
        return self.complete(error_code(std::error_code(errno, std::generic_category())), exit_status{});
      pidfd_ = std::make_unique<net::posix::basic_stream_descriptor<Executor>>(ex_, fd);
    }
    pidfd_->async_wait(net::posix::descriptor_base::wait_read, std::move(self));
  }

 private:
  Executor ex_;
  child& child_;
  bool started_ = false;
  std::unique_ptr<net::posix::basic_stream_descriptor<Executor>> pidfd_;
};

/// The pumps of one child on an executor (a strand of the user's, so that a
/// multi-threaded io_context runs them one at a time): the descriptors and
/// ring streams live in `shared`, which every pending pump keeps alive, so
/// the handle may go (stop()) while they finish on the executor.
template <class Strand>
class process_pumps final : public ::userpipe::detail::loop_pumps {
  using descriptor = net::posix::basic_stream_descriptor<Strand>;
  struct shared {
    explicit shared(Strand s) : strand(std::move(s)) {}
    Strand strand;
    std::optional<descriptor> fds[3];
    std::optional<USERPIPE_ASIO_PUBLIC::basic_async_reader<Strand>> stdin_ring;
    std::optional<USERPIPE_ASIO_PUBLIC::basic_async_writer<Strand>> output_rings[3];  // [1], [2]
    bool terminal = false;

    /// Closes what a cancelled thread pump would: everything.
    /// What a cancelled thread pump does: cut every stream. Except an
    /// output whose every writer is gone (POLLHUP: the dead child's last
    /// bytes, then EOF, wait in the kernel): its pump finishes by itself,
    /// so the reader gets those bytes and EOF, as the thread pump, which
    /// prefers a ready fd to the cancel, gives them too.
    void stop() noexcept {
      error_code ignored;
      for (int i = 0; i < 3; ++i) {
        if (!fds[i] || !fds[i]->is_open()) continue;
        if (i > 0) {
          pollfd p{fds[i]->native_handle(), POLLIN, 0};
          if (::poll(&p, 1, 0) == 1 && (p.revents & POLLHUP) != 0) continue;
        }
        fds[i]->close(ignored);
        if (i == 0 && stdin_ring) stdin_ring->cancel();
        if (i > 0 && output_rings[i]) output_rings[i]->cancel();
      }
    }
  };

 public:
  explicit process_pumps(Strand strand) : shared_(std::make_shared<shared>(std::move(strand))) {}

  void start(int const (&raw)[3], reader stdin_ring, writer stdout_ring, writer stderr_ring,
             bool terminal) override {
    shared& s = *shared_;
    s.terminal = terminal;
    // Own every descriptor first, so that none leaks if a step throws.
    for (int i = 0; i < 3; ++i) {
      try {
        if (raw[i] >= 0) s.fds[i].emplace(s.strand, raw[i]);
      } catch (...) {
        for (int j = i; j < 3; ++j)
          if (raw[j] >= 0) ::close(raw[j]);
        throw;
      }
    }
    if (s.fds[0]) s.stdin_ring.emplace(s.strand, std::move(stdin_ring));
    if (s.fds[1]) s.output_rings[1].emplace(s.strand, std::move(stdout_ring));
    if (s.fds[2]) s.output_rings[2].emplace(s.strand, std::move(stderr_ring));
    net::dispatch(s.strand, [p = shared_] { launch(p); });
  }

  void stop() noexcept override {
    net::dispatch(shared_->strand, [p = shared_]() noexcept { p->stop(); });
  }

 private:
  /// On the strand: the pumps, and the stdin watcher.
  static void launch(std::shared_ptr<shared> const& p) {
    shared& s = *p;
    for (int i = 1; i < 3; ++i) {
      if (!s.fds[i]) continue;
      auto done = [p, i](error_code, std::uint64_t) {
        error_code ignored;
        p->fds[i]->close(ignored);  // a child still writing gets SIGPIPE, as after `head` exits
      };
      net::async_compose<decltype(done), void(error_code, std::uint64_t)>(
          pump_in_op<descriptor, USERPIPE_ASIO_PUBLIC::basic_async_writer<Strand>>(
              *s.fds[i], *s.output_rings[i], s.terminal),
          done, *s.fds[i]);
    }
    if (!s.fds[0]) return;
    auto done = [p](error_code, std::uint64_t) {
      p->stdin_ring->close();  // a writer still writing gets broken_pipe
      error_code ignored;
      p->fds[0]->close(ignored);  // the child reads EOF (a terminal: the master's other descriptor stays)
    };
    net::async_compose<decltype(done), void(error_code, std::uint64_t)>(
        pump_out_op<USERPIPE_ASIO_PUBLIC::basic_async_reader<Strand>, descriptor>(*s.stdin_ring, *s.fds[0],
                                                                                  s.terminal),
        done, *s.fds[0]);
    // The child closing its stdin (or hanging up its terminal) while the
    // ring is empty: the descriptor reports an error; close the ring so that
    // in()'s next write fails with broken_pipe, as the thread pump does.
    s.fds[0]->async_wait(net::posix::descriptor_base::wait_error, [p](error_code ec) {
      if (!ec && p->stdin_ring) p->stdin_ring->pipe_end().close(std::make_error_code(std::errc::broken_pipe));
    });
    // An error that came before the watcher was queued raised no new event.
    pollfd pfd{s.fds[0]->native_handle(), 0, 0};
    if (::poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLERR | POLLHUP)) != 0)
      s.stdin_ring->pipe_end().close(std::make_error_code(std::errc::broken_pipe));
  }

  std::shared_ptr<shared> shared_;
};

/// The executor of an executor or of an execution context.
template <class T>
auto executor_of(T& t) {
  if constexpr (std::is_convertible_v<T&, net::execution_context&>)
    return t.get_executor();
  else
    return t;
}

/// An execution context of this Asio, or an executor whose context is one
/// (so that the other spelling's executors never match).
template <class T>
concept executor_or_context = std::is_convertible_v<T&, net::execution_context&> || requires(T const& e) {
  { net::query(e, net::execution::context) } -> std::convertible_to<net::execution_context&>;
};

}  // namespace userpipe::USERPIPE_ASIO_DETAIL

namespace USERPIPE_ASIO_PUBLIC {

/// Copies `from` into `to` until EOF, then closes `to` (the reader gets EOF
/// after the last byte): userpipe::pump(fd, writer) on the event loop. The
/// descriptor is put in non-blocking mode and never closed. Completion:
/// void(error_code, std::uint64_t bytes); the errors are pump's (fd.hpp).
/// Cancelled or aborted (the descriptor or stream closed): the writer is
/// closed with operation_canceled and so is the operation.
template <class Executor, class Writer,
          class Token = ::USERPIPE_ASIO_NAMESPACE::default_completion_token_t<Executor>>
auto async_pump(::USERPIPE_ASIO_NAMESPACE::posix::basic_stream_descriptor<Executor>& from, Writer& to,
                Token&& token = ::USERPIPE_ASIO_NAMESPACE::default_completion_token_t<Executor>()) {
  namespace d = ::userpipe::USERPIPE_ASIO_DETAIL;
  from.native_non_blocking(true);
  return ::USERPIPE_ASIO_NAMESPACE::async_compose<Token, void(d::error_code, std::uint64_t)>(
      d::pump_in_op<std::remove_reference_t<decltype(from)>, Writer>(from, to, false), token, from, to);
}

/// Copies `from` into `to` until the reader's EOF, leaving `to` open:
/// userpipe::pump(reader, fd) on the event loop, with the same errors
/// (EPIPE: the reader is closed with broken_pipe; SIGPIPE is not raised).
/// The descriptor is put in non-blocking mode.
template <class Reader, class Executor,
          class Token = ::USERPIPE_ASIO_NAMESPACE::default_completion_token_t<Executor>>
auto async_pump(Reader& from, ::USERPIPE_ASIO_NAMESPACE::posix::basic_stream_descriptor<Executor>& to,
                Token&& token = ::USERPIPE_ASIO_NAMESPACE::default_completion_token_t<Executor>()) {
  namespace d = ::userpipe::USERPIPE_ASIO_DETAIL;
  to.native_non_blocking(true);
  return ::USERPIPE_ASIO_NAMESPACE::async_compose<Token, void(d::error_code, std::uint64_t)>(
      d::pump_out_op<Reader, std::remove_reference_t<decltype(to)>>(from, to, false), token, from, to);
}

/// userpipe::spawn with the pumps on `ex` (an executor or an execution
/// context) instead of threads: the same child, the same ends, the same
/// behaviour; no thread is started. The pumps of one child run on a strand
/// of `ex`. Any thread. Throws what spawn throws.
template <class ExecutorOrContext>
requires ::userpipe::USERPIPE_ASIO_DETAIL::executor_or_context<std::remove_cvref_t<ExecutorOrContext>> child
spawn(ExecutorOrContext&& ex, std::vector<std::string> const& argv, spawn_options const& opts,
      std::error_code& ec)
noexcept {
  namespace d = ::userpipe::USERPIPE_ASIO_DETAIL;
  try {
    auto strand = d::net::make_strand(d::executor_of(ex));
    return ::userpipe::detail::spawn_with(argv, opts,
                                          std::make_unique<d::process_pumps<decltype(strand)>>(strand), ec);
  } catch (std::bad_alloc const&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    return {};
  }
}

/// Waits, without a thread and without blocking the loop, until `c` exits,
/// and reaps it: completion void(error_code, exit_status) with what
/// c.wait() would return (at once, posted, if it already has). `c` must
/// outlive the operation; do not wait for it elsewhere meanwhile. Works for
/// a child of either mode. Linux >= 5.3 (a pidfd). Errors: c.try_wait's
/// (no_child_process for an empty handle), pidfd_open's.
template <class ExecutorOrContext,
          class Token = ::USERPIPE_ASIO_NAMESPACE::default_completion_token_t<
              decltype(::userpipe::USERPIPE_ASIO_DETAIL::executor_of(std::declval<ExecutorOrContext&>()))>>
requires ::userpipe::USERPIPE_ASIO_DETAIL::executor_or_context<std::remove_cvref_t<ExecutorOrContext>>
auto async_wait_exit(ExecutorOrContext&& ex, child& c, Token&& token = {}) {
  namespace d = ::userpipe::USERPIPE_ASIO_DETAIL;
  auto executor = d::executor_of(ex);
  return ::USERPIPE_ASIO_NAMESPACE::async_compose<Token, void(d::error_code, exit_status)>(
      d::exit_wait_op<decltype(executor)>(executor, c), token, executor);
}

template <class ExecutorOrContext>
requires ::userpipe::USERPIPE_ASIO_DETAIL::executor_or_context<std::remove_cvref_t<ExecutorOrContext>> child
spawn(ExecutorOrContext&& ex, std::vector<std::string> const& argv, spawn_options const& opts = {}) {
  std::error_code ec;
  child c = ::USERPIPE_ASIO_PUBLIC::spawn(ex, argv, opts, ec);
  ::userpipe::detail::throw_if(ec, "userpipe::spawn(executor)");
  return c;
}

}  // namespace USERPIPE_ASIO_PUBLIC
