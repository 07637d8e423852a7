// Shared pipes: the ring in a sealed memfd, one socket per end for the
// doorbell and the peer's liveness, and the handover of an end to another
// process as one descriptor. The promises and the reasons are at the top of
// include/userpipe/shared.hpp; the wait protocol's side in
// include/userpipe/detail/wait.hpp ("Across processes").
//
// The memfd: one header page (magic, version, geometry for the adopter to
// check, then the pipe_words both ends write), then the ring's bytes,
// mapped twice back to back for a mirrored pipe.
//
// The handover descriptor is an envelope: a fresh SOCK_SEQPACKET pair, on
// whose one side a single message is queued (a small handshake with the
// geometry and role, and SCM_RIGHTS carrying the memfd and the end's
// socket) before that side is closed. The other side is what the caller
// gets: one descriptor that works alike for inheritance, spawn and
// SCM_RIGHTS. If it is closed unread, the kernel drops the queued
// descriptors, the end's socket closes and the peer sees a hang-up, as it
// would for a process that died holding the end.
#include "userpipe/shared.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <mutex>
#include <new>
#include <span>

#include "posix.hpp"
#include "shared_wait.hpp"

namespace userpipe::detail {

namespace {

using posix::errno_code;
using posix::unique_fd;

constexpr std::uint64_t header_magic = 0x3165706970726573;  // "serpipe1", little-endian
constexpr std::uint64_t handshake_magic = 0x6b616873646e6168;
constexpr std::uint32_t layout_version = 1;
enum role : std::uint32_t { reader_role = 0, writer_role = 1 };

/// The first page of the memfd.
struct shared_header {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t header_size;
  std::uint64_t capacity;
  std::uint32_t mirrored;
  pipe_words words;
};

/// The one message in the envelope, beside the two descriptors.
struct handshake {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t role;
  std::uint64_t capacity;
  std::uint32_t header_size;
  std::uint32_t mirrored;
  std::uint32_t generation;  // the handed-over end's wait generation (wait.hpp)
  std::uint32_t reserved;
};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free &&
                  std::atomic<std::uint32_t>::is_always_lock_free,
              "the shared words must be lock-free to work across processes");

std::size_t page_size() noexcept { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }
std::size_t header_size() noexcept { return std::max(page_size(), std::bit_ceil(sizeof(shared_header))); }

constexpr std::uint32_t required_seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

std::system_error error(std::errc e, char const* what) { return {std::make_error_code(e), what}; }
std::system_error error(std::error_code ec, char const* what) { return {ec, what}; }

}  // namespace

struct shared_link {
  pipe_state* state = nullptr;
  int memfd = -1;
  std::byte* base = nullptr;
  std::size_t reserved = 0;  // bytes of address space mapped at base
  std::size_t capacity = 0;
  bool mirrored = false;
  std::array<int, 2> sockets{-1, -1};  // by role; -1: that end is not in this process
  shared_slot reader_slot;
  shared_slot writer_slot;
  shared_link* next = nullptr;  // the registry, for fork()
  shared_link* prev = nullptr;
};

namespace {

// Every link in this process, so that a fork()ed child can disown them.
std::mutex registry_mutex;
shared_link* registry = nullptr;

void disown_in_child(shared_link& link) noexcept;

void fork_prepare() noexcept {
  registry_mutex.lock();
  lock_watcher();
}
void fork_parent() noexcept {
  unlock_watcher();
  registry_mutex.unlock();
}
void fork_child() noexcept {
  for (shared_link* l = registry; l != nullptr; l = l->next) disown_in_child(*l);
  forget_watcher_in_child();
  unlock_watcher();
  registry_mutex.unlock();
}

void enlist(shared_link* link) {
  static std::once_flag once;
  std::call_once(once, [] { ::pthread_atfork(fork_prepare, fork_parent, fork_child); });
  std::lock_guard lock(registry_mutex);
  link->next = registry;
  if (registry != nullptr) registry->prev = link;
  registry = link;
}

void delist(shared_link* link) noexcept {
  std::lock_guard lock(registry_mutex);
  if (link->prev != nullptr) link->prev->next = link->next;
  if (link->next != nullptr) link->next->prev = link->prev;
  if (registry == link) registry = link->next;
}

void close_fd(int& fd) noexcept {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

/// Maps the memfd: header then ring, the ring twice if mirrored. Reserves
/// the whole range first so nothing lands between the two ring mappings.
std::byte* map_pipe(int memfd, std::size_t header, std::size_t capacity, bool mirrored,
                    std::size_t& reserved) {
  reserved = header + (mirrored ? 2 : 1) * capacity;
  void* const base = ::mmap(nullptr, reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) throw error(errno_code(), "userpipe: mmap (reserve)");
  auto* const bytes = static_cast<std::byte*>(base);
  auto map = [&](std::byte* at, std::size_t size, off_t offset) {
    if (::mmap(at, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, memfd, offset) == MAP_FAILED) {
      int const e = errno;
      ::munmap(base, reserved);
      throw error(errno_code(e), "userpipe: mmap (shared ring)");
    }
  };
  if (mirrored) {
    map(bytes, header, 0);
    map(bytes + header, capacity, static_cast<off_t>(header));
    map(bytes + header + capacity, capacity, static_cast<off_t>(header));
  } else {
    map(bytes, header + capacity, 0);
  }
  return bytes;
}

shared_header& header_of(shared_link const& link) noexcept {
  return *reinterpret_cast<shared_header*>(link.base);
}

/// Builds this process's control block over a mapped link. `ends` are the
/// roles whose sockets this process holds.
pipe_state* attach(shared_link* link, int references) {
  auto& header = header_of(*link);
  auto* state = new pipe_state(memory::borrowed(link->base + header_size(), link->capacity, link->mirrored),
                               &header.words, fence_mode::symmetric);
  state->references.store(references, std::memory_order_relaxed);
  state->link = link;
  link->state = state;
  // The reader sleeps on its socket; the writer's bell arrives there.
  link->reader_slot.sleep_fd = link->sockets[reader_role];
  link->reader_slot.bell_fd = link->sockets[writer_role];
  link->reader_slot.gone = &state->gone;
  link->reader_slot.gone_bit = pipe_state::writer_closed;
  link->writer_slot.sleep_fd = link->sockets[writer_role];
  link->writer_slot.bell_fd = link->sockets[reader_role];
  link->writer_slot.gone = &state->gone;
  link->writer_slot.gone_bit = pipe_state::reader_closed;
  state->reader_wait.share(&link->reader_slot);
  state->writer_wait.share(&link->writer_slot);
  return state;
}

}  // namespace

void destroy(shared_link* link) noexcept {
  delist(link);
  for (int& s : link->sockets) close_fd(s);
  close_fd(link->memfd);
  if (link->base != nullptr) ::munmap(link->base, link->reserved);
  delete link;
}

pipe_state* make_shared_state(std::size_t capacity, bool mirrored) {
  capacity = std::max(capacity, page_size());
  std::size_t const header = header_size();
  std::size_t const size = header + capacity;

  unique_fd memfd(::memfd_create("userpipe", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!memfd) throw error(errno_code(), "userpipe::make_pipe: memfd_create");
  if (::ftruncate(memfd.get(), static_cast<off_t>(size)) != 0)
    throw error(errno_code(), "userpipe::make_pipe: ftruncate");
  // Every page now, so that a lack of memory is this error and not a
  // SIGBUS on some later write.
  if (int const e = posix::retry([&] { return ::posix_fallocate(memfd.get(), 0, static_cast<off_t>(size)); });
      e != 0)
    throw error(errno_code(e == ENOSPC ? ENOMEM : e), "userpipe::make_pipe: fallocate");
  if (::fcntl(memfd.get(), F_ADD_SEALS, required_seals) != 0)
    throw error(errno_code(), "userpipe::make_pipe: seal");

  int sockets[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sockets) != 0)
    throw error(errno_code(), "userpipe::make_pipe: socketpair");
  unique_fd reader_socket(sockets[0]), writer_socket(sockets[1]);

  auto* link = new shared_link;
  try {
    link->base = map_pipe(memfd.get(), header, capacity, mirrored, link->reserved);
  } catch (...) {
    delete link;
    throw;
  }
  auto* h = new (link->base) shared_header{
      header_magic, layout_version, static_cast<std::uint32_t>(header), capacity, mirrored ? 1u : 0u, {}};
  (void)h;
  link->capacity = capacity;
  link->mirrored = mirrored;
  link->memfd = memfd.release();
  link->sockets[reader_role] = reader_socket.release();
  link->sockets[writer_role] = writer_socket.release();
  try {
    enlist(link);
    return attach(link, 2);
  } catch (std::bad_alloc const&) {
    destroy(link);
    throw error(std::errc::not_enough_memory, "userpipe::make_pipe");
  }
}

void close_socket(pipe_state& state, std::uint32_t end_bit) noexcept {
  shared_link& link = *state.link;
  int const role = end_bit == pipe_state::reader_closed ? reader_role : writer_role;
  close_fd(link.sockets[role]);
  if (role == reader_role) {
    link.reader_slot.sleep_fd = -1;
    link.writer_slot.bell_fd = -1;
  } else {
    link.writer_slot.sleep_fd = -1;
    link.reader_slot.bell_fd = -1;
  }
}

bool peer_hung_up_slow(pipe_state& state, std::uint32_t peer_bit) noexcept {
  shared_link& link = *state.link;
  int const own = link.sockets[peer_bit == pipe_state::writer_closed ? reader_role : writer_role];
  if (own < 0) return false;
  pollfd p{own, POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0 || (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)) == 0) return false;
  state.gone.fetch_or(peer_bit, std::memory_order_seq_cst);
  return true;
}

namespace {

void disown_in_child(shared_link& link) noexcept {
  // The child's copies must neither keep the peer from seeing the parent
  // die (the sockets) nor touch the parent's stream (the mapping).
  for (int& s : link.sockets) close_fd(s);
  link.reader_slot.sleep_fd = link.reader_slot.bell_fd = -1;
  link.writer_slot.sleep_fd = link.writer_slot.bell_fd = -1;
  link.reader_slot.watch_id = link.writer_slot.watch_id = 0;
  close_fd(link.memfd);
  if (link.base != nullptr)
    ::mmap(link.base, link.reserved, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  pipe_state& state = *link.state;
  state.gone.fetch_or(pipe_state::reader_closed | pipe_state::writer_closed | pipe_state::forked);
  state.bytes.disown();
}

// ---- handover ---------------------------------------------------------------

/// Takes ownership of the descriptors an SCM_RIGHTS message brought, before
/// anything is judged, so that every path closes them. Receivers give
/// recvmsg room for four: the kernel closes any beyond what fits (unix(7)).
struct received_descriptors {
  std::array<posix::unique_fd, 4> fds;
  std::size_t count = 0;
};
received_descriptors take_descriptors(msghdr& msg) noexcept {
  received_descriptors out;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    std::size_t const k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < k && out.count < out.fds.size(); ++i) {
      int v;
      std::memcpy(&v, CMSG_DATA(c) + i * sizeof(int), sizeof v);
      out.fds[out.count++].reset(v);
    }
  }
  return out;
}

/// One datagram of `size` bytes at `data` with `fds` attached (SCM_RIGHTS),
/// retried on EINTR, never raising SIGPIPE. -1 with errno on failure.
ssize_t send_with_descriptors(int socket, void const* data, std::size_t size,
                              std::span<int const> fds) noexcept {
  alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))] = {};
  iovec iov{const_cast<void*>(data), size};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(fds.size_bytes());
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(fds.size_bytes());
  std::memcpy(CMSG_DATA(cmsg), fds.data(), fds.size_bytes());
  return posix::retry([&] { return ::sendmsg(socket, &msg, MSG_NOSIGNAL); });
}

int to_descriptor_impl(pipe_state* state, bool closed, role r, std::error_code& ec) noexcept {
  ec.clear();
  if (state == nullptr || closed) {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return -1;
  }
  shared_link* link = state->link;
  if (link == nullptr || link->sockets[r] < 0 || (state->gone.load() & pipe_state::forked)) {
    ec = std::make_error_code(link == nullptr ? std::errc::invalid_argument : std::errc::bad_file_descriptor);
    return -1;
  }
  int envelope[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, envelope) != 0) {
    ec = errno_code();
    return -1;
  }
  unique_fd sender(envelope[0]), kept(envelope[1]);
  wait_slot& own = r == reader_role ? state->reader_wait : state->writer_wait;
  handshake const hello{handshake_magic,
                        layout_version,
                        r,
                        link->capacity,
                        static_cast<std::uint32_t>(header_size()),
                        link->mirrored ? 1u : 0u,
                        own.shared()->generation,
                        0};
  int const fds[2] = {link->memfd, link->sockets[r]};
  if (send_with_descriptors(sender.get(), &hello, sizeof hello, fds) < 0) {
    ec = errno_code();
    return -1;
  }
  // The end now lives in the envelope. Withdraw anything it parked here
  // (silently: its owner gave it away) and drop this process's socket; the
  // copy in flight keeps the peer from seeing a hang-up.
  own.unpark();
  unwatch(own);
  close_socket(*state, r == reader_role ? pipe_state::reader_closed : pipe_state::writer_closed);
  return kept.release();
}

/// Receives the envelope's message and checks all of it; returns this
/// process's control block with the one end.
pipe_state* adopt_impl(int fd, role r) {
  unique_fd envelope(fd);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) throw error(std::errc::bad_file_descriptor, "userpipe::adopt");
  int type = 0;
  socklen_t length = sizeof type;
  if (!S_ISSOCK(st.st_mode) || ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) != 0 ||
      type != SOCK_SEQPACKET)
    throw error(std::errc::invalid_argument, "userpipe::adopt: not a userpipe handover descriptor");

  handshake hello{};
  char extra;  // a longer message is not ours
  iovec iov[2] = {{&hello, sizeof hello}, {&extra, 1}};
  alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = 2;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t const n = posix::retry([&] { return ::recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC); });
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      throw error(std::errc::invalid_argument, "userpipe::adopt: nothing was handed over on this descriptor");
    throw error(errno_code(), "userpipe::adopt: recvmsg");
  }
  // Take ownership of whatever descriptors came before judging anything.
  auto [received, count] = take_descriptors(msg);
  envelope.reset();
  auto bad = [](char const* what) { return error(std::errc::protocol_error, what); };
  if (n == 0 && count == 0)
    throw error(std::errc::invalid_argument, "userpipe::adopt: nothing was handed over");
  if (static_cast<std::size_t>(n) != sizeof hello || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 ||
      count != 2)
    throw bad("userpipe::adopt: not a userpipe handover");
  if (hello.magic != handshake_magic) throw bad("userpipe::adopt: not a userpipe handover");
  if (hello.version != layout_version) throw bad("userpipe::adopt: handover of another userpipe version");
  if (hello.role != r) throw bad("userpipe::adopt: handover of the other end");
  std::size_t const header = header_size();
  if (hello.header_size != header || hello.mirrored > 1 || hello.capacity < page_size() ||
      hello.capacity > max_capacity || !std::has_single_bit(hello.capacity))
    throw bad("userpipe::adopt: handover with impossible geometry");
  std::size_t const capacity = hello.capacity;
  bool const mirrored = hello.mirrored != 0;

  // The memfd: a regular file of exactly our size that nobody can resize.
  int const memfd = received[0].get();
  if (::fstat(memfd, &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<std::size_t>(st.st_size) != header + capacity)
    throw bad("userpipe::adopt: shared memory of the wrong kind or size");
  int const seals = ::fcntl(memfd, F_GET_SEALS);
  if (seals < 0 || (static_cast<std::uint32_t>(seals) & required_seals) != required_seals ||
      (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) != 0)
    throw bad("userpipe::adopt: shared memory not sealed as userpipe seals it");
  // The end's socket: one of a SOCK_SEQPACKET pair.
  int const socket = received[1].get();
  length = sizeof type;
  if (::fstat(socket, &st) != 0 || !S_ISSOCK(st.st_mode) ||
      ::getsockopt(socket, SOL_SOCKET, SO_TYPE, &type, &length) != 0 || type != SOCK_SEQPACKET)
    throw bad("userpipe::adopt: handover without its liveness socket");

  auto* link = new shared_link;
  try {
    link->base = map_pipe(memfd, header, capacity, mirrored, link->reserved);
  } catch (...) {
    delete link;
    throw;
  }
  link->capacity = capacity;
  link->mirrored = mirrored;
  link->memfd = received[0].release();
  link->sockets[r] = received[1].release();
  // Read once, checked, never believed again: the geometry is ours now.
  auto const& h = header_of(*link);
  std::uint64_t const head = h.words.indices.head.load(std::memory_order_acquire);
  std::uint64_t const tail = h.words.indices.tail.load(std::memory_order_acquire);
  if (h.magic != header_magic || h.version != layout_version || h.header_size != header ||
      h.capacity != capacity || h.mirrored != hello.mirrored || tail > head || head - tail > capacity) {
    destroy(link);
    throw bad("userpipe::adopt: corrupt shared header");
  }
  try {
    enlist(link);
    pipe_state* state = attach(link, 1);
    (r == reader_role ? link->reader_slot : link->writer_slot).generation = hello.generation;
    return state;
  } catch (std::bad_alloc const&) {
    destroy(link);
    throw error(std::errc::not_enough_memory, "userpipe::adopt");
  }
}

}  // namespace

struct end_access {
  template <class End>
  static pipe_state* state(End const& end) noexcept {
    return end.state_;
  }
  template <class End>
  static bool closed(End const& end) noexcept {
    return end.closed_;
  }
  /// Forgets the end's control block after its handover (not a close:
  /// the end lives on elsewhere).
  template <class End>
  static void disown(End& end) noexcept {
    drop_reference(std::exchange(end.state_, nullptr));
    end.closed_ = false;
  }
  static reader make_reader(pipe_state* s) noexcept { return reader(s); }
  static writer make_writer(pipe_state* s) noexcept { return writer(s); }
  static void before_handover(reader& end) noexcept {
    std::error_code ignored;
    end.check_open(ignored);  // frees a line read_line_view left in the ring
  }
  static void before_handover(writer&) noexcept {}
};

}  // namespace userpipe::detail

namespace userpipe {

namespace {

using detail::end_access;

template <class End>
int to_descriptor_end(End& end, detail::role r, std::error_code& ec) noexcept {
  if (end_access::state(end) != nullptr && !end_access::closed(end)) end_access::before_handover(end);
  int const fd = detail::to_descriptor_impl(end_access::state(end), end_access::closed(end), r, ec);
  if (fd >= 0) end_access::disown(end);
  return fd;
}

template <class F>
auto or_error(F f, std::error_code& ec) noexcept -> decltype(f()) {
  ec.clear();
  try {
    return f();
  } catch (std::system_error const& e) {
    ec = e.code();
  } catch (std::bad_alloc const&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
  }
  return {};
}

}  // namespace

int to_descriptor(reader&& end, std::error_code& ec) noexcept {
  return to_descriptor_end(end, detail::reader_role, ec);
}
int to_descriptor(writer&& end, std::error_code& ec) noexcept {
  return to_descriptor_end(end, detail::writer_role, ec);
}
int to_descriptor(reader&& end) {
  std::error_code ec;
  int const fd = to_descriptor(std::move(end), ec);
  detail::throw_if(ec, "userpipe::to_descriptor");
  return fd;
}
int to_descriptor(writer&& end) {
  std::error_code ec;
  int const fd = to_descriptor(std::move(end), ec);
  detail::throw_if(ec, "userpipe::to_descriptor");
  return fd;
}

reader adopt_reader(int fd) { return end_access::make_reader(detail::adopt_impl(fd, detail::reader_role)); }
writer adopt_writer(int fd) { return end_access::make_writer(detail::adopt_impl(fd, detail::writer_role)); }
reader adopt_reader(int fd, std::error_code& ec) noexcept {
  return or_error([&] { return adopt_reader(fd); }, ec);
}
writer adopt_writer(int fd, std::error_code& ec) noexcept {
  return or_error([&] { return adopt_writer(fd); }, ec);
}

bool is_shared(reader const& end) noexcept {
  auto* s = end_access::state(end);
  return s != nullptr && s->link != nullptr;
}
bool is_shared(writer const& end) noexcept {
  auto* s = end_access::state(end);
  return s != nullptr && s->link != nullptr;
}

// ---- over a Unix socket -------------------------------------------------------

namespace {

/// Sends the envelope descriptor itself over the user's socket: the end's
/// handover stays one format whichever way it travels.
template <class End>
void send_end_impl(int unix_socket, End& end, detail::role r, std::error_code& ec) noexcept {
  ec.clear();
  // Checked before the envelope is made, so that a failed send leaves the
  // end as it was: the envelope is only built if the socket looks usable.
  int type = 0;
  socklen_t length = sizeof type;
  if (::getsockopt(unix_socket, SOL_SOCKET, SO_TYPE, &type, &length) != 0) {
    ec = detail::posix::errno_code();
    return;
  }
  int const fd = detail::to_descriptor_impl(end_access::state(end), end_access::closed(end), r, ec);
  if (fd < 0) return;
  detail::posix::unique_fd envelope(fd);
  char const tag = 'u';
  if (detail::send_with_descriptors(unix_socket, &tag, 1, std::span(&fd, 1)) < 0) {
    ec = detail::posix::errno_code();
    // The end is in the envelope already: take it back out, so that a
    // failed send leaves the caller with its end.
    try {
      auto* state = detail::adopt_impl(envelope.release(), r);
      end_access::disown(end);
      if constexpr (std::is_same_v<End, reader>)
        end = end_access::make_reader(state);
      else
        end = end_access::make_writer(state);
    } catch (...) {
      end_access::disown(end);  // lost with the envelope: the peer sees a hang-up
    }
    return;
  }
  end_access::disown(end);
}

int receive_envelope(int unix_socket) {
  char tag = 0;
  iovec iov{&tag, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t const n = detail::posix::retry([&] { return ::recvmsg(unix_socket, &msg, MSG_CMSG_CLOEXEC); });
  if (n < 0) throw std::system_error(detail::posix::errno_code(), "userpipe::receive: recvmsg");
  auto [received, count] = detail::take_descriptors(msg);
  if (n == 0 && count == 0)
    throw std::system_error(std::make_error_code(std::errc::connection_reset),
                            "userpipe::receive: socket closed");
  if (n != 1 || tag != 'u' || count != 1)
    throw std::system_error(std::make_error_code(std::errc::protocol_error),
                            "userpipe::receive: not a userpipe end");
  return received[0].release();
}

}  // namespace

void send_end(int unix_socket, reader&& end, std::error_code& ec) noexcept {
  if (end_access::state(end) != nullptr && !end_access::closed(end)) end_access::before_handover(end);
  send_end_impl(unix_socket, end, detail::reader_role, ec);
}
void send_end(int unix_socket, writer&& end, std::error_code& ec) noexcept {
  send_end_impl(unix_socket, end, detail::writer_role, ec);
}
void send_end(int unix_socket, reader&& end) {
  std::error_code ec;
  send_end(unix_socket, std::move(end), ec);
  detail::throw_if(ec, "userpipe::send_end");
}
void send_end(int unix_socket, writer&& end) {
  std::error_code ec;
  send_end(unix_socket, std::move(end), ec);
  detail::throw_if(ec, "userpipe::send_end");
}

reader receive_reader(int unix_socket) { return adopt_reader(receive_envelope(unix_socket)); }
writer receive_writer(int unix_socket) { return adopt_writer(receive_envelope(unix_socket)); }
reader receive_reader(int unix_socket, std::error_code& ec) noexcept {
  return or_error([&] { return receive_reader(unix_socket); }, ec);
}
writer receive_writer(int unix_socket, std::error_code& ec) noexcept {
  return or_error([&] { return receive_writer(unix_socket); }, ec);
}

}  // namespace userpipe
