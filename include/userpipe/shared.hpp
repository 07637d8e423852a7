// userpipe/shared.hpp — handing an end of a pipe to another process.
//
// A pipe made with make_pipe({.shared = true}) keeps its ring in a sealed
// memfd instead of the heap. Its ends are the ordinary reader and writer;
// the functions here turn one end into a single descriptor another process
// can receive (inherited across exec, given by spawn, or sent over a Unix
// socket) and turn that descriptor back into an end. The data path is the
// same as in one process: a memcpy and an atomic store, no system call
// while the pipe is busy.
//
//   // parent                                  // child (exec'd with fd 3)
//   auto [r, w] = make_pipe({.shared = true}); auto w = adopt_writer(3);
//   int fd = to_descriptor(std::move(w));      w.write("hello\n");
//   spawn({"worker"}, {.descriptors = {{3, fd}}}); ::close(fd);
//   r.read_line(line);
//
// The child-side idiom: the child must learn which descriptor it got. Give
// it a fixed number (spawn_options::descriptors maps it; posix_spawn users
// dup2 it there) and say so on its command line or in an environment
// variable (e.g. USERPIPE_FD=3); the child calls adopt_reader/adopt_writer
// on that number once. The descriptor is O_CLOEXEC in this process; spawn's
// mapping (or dup2) clears the flag in the child only.
//
// Promises across processes, in addition to pipe.hpp's:
//  - A dead peer is a closed peer. If the process holding the other end
//    dies without closing it (SIGKILL, crash, _exit), the survivor reads
//    EOF after every byte the writer had committed, or gets broken_pipe when
//    writing, also while asleep in a blocking call or parked by an event
//    loop. The kernel tells us: each end owns one socket of an
//    AF_UNIX/SOCK_SEQPACKET pair, and a dead process's sockets close at once
//    (POLLHUP). A side that must sleep sleeps in poll() on its socket, which
//    also carries the one-byte doorbell a waker in another process sends
//    instead of a futex wake. No timer, no heartbeat: an idle shared pipe
//    costs no CPU.
//  - Nothing shared is trusted. Capacity, mask, mapping and the mirrored
//    flag come from the handover and are checked against the memfd (fstat
//    size, seals, magic, version); each side keeps its own index privately
//    and only publishes it; the peer's index is checked on every refresh
//    (never backwards, never more than the capacity ahead): a violation
//    fails the call with protocol_error and closes this end. A hostile peer
//    can make us read garbage bytes, never read or write out of bounds,
//    crash or hang.
//  - Memory that cannot be pulled away: the memfd is sealed (no shrink, no
//    grow, no further seals) and its pages are allocated at creation, so a
//    lack of memory is an error from make_pipe, never a SIGBUS later.
//    Nothing is created in /dev/shm or any file system: when the last
//    process holding the pipe goes, so does the memory.
//
// Statistics: bytes come from the shared indices; the wait and wake counts
// are this process's only.
//
// fork(): a child made by fork() gets unusable copies of the ends. Every
// call on them fails with bad_file_descriptor, their sockets are closed in
// the child at once (so the parent's peer still sees the parent die) and
// the child's copy of the ring is replaced by private zero pages, so the
// child can never disturb the parent's stream. To give a child an end, use
// to_descriptor and exec (or spawn).
#pragma once

#include <system_error>

#include "userpipe/pipe.hpp"

namespace userpipe {

/// Packs an open end of a shared pipe into one O_CLOEXEC descriptor that
/// the caller owns, for another process to adopt. The end is left
/// moved-from (its bytes stay in the pipe; unread bytes are the adopter's to
/// read). Any thread that may use the end. Does not block. Throws
/// std::system_error: invalid_argument for an end of a pipe that is not
/// shared, bad_file_descriptor for a closed or moved-from end,
/// too_many_files_open and the like from socketpair/sendmsg. On failure the
/// end is left as it was. The error_code forms return -1.
int to_descriptor(reader&& end);
int to_descriptor(writer&& end);
int to_descriptor(reader&& end, std::error_code& ec) noexcept;
int to_descriptor(writer&& end, std::error_code& ec) noexcept;

/// The receiving side of to_descriptor: turns the descriptor into the end
/// it carries. Takes ownership of `fd` whatever happens (it is closed before
/// returning). Any thread; does not block. Checks everything it receives
/// and throws std::system_error: invalid_argument for a descriptor that is
/// not a handover (a file, a pipe, another kind of socket, nothing sent on
/// it), protocol_error for a handover whose contents are wrong (garbage,
/// another version, the other end's role, a memfd of the wrong size or
/// unsealed, a corrupt header), and the errno of a failing mmap. The
/// error_code forms return a closed end.
reader adopt_reader(int fd);
writer adopt_writer(int fd);
reader adopt_reader(int fd, std::error_code& ec) noexcept;
writer adopt_writer(int fd, std::error_code& ec) noexcept;

/// Sends an end over a connected AF_UNIX socket (SCM_RIGHTS) to a process
/// that calls receive_reader/receive_writer on the other side. The end is
/// left moved-from on success, unchanged on failure. Blocks like sendmsg on
/// `unix_socket` (the message is small). Throws std::system_error with the
/// errno of sendmsg, or as to_descriptor.
void send_end(int unix_socket, reader&& end);
void send_end(int unix_socket, writer&& end);
void send_end(int unix_socket, reader&& end, std::error_code& ec) noexcept;
void send_end(int unix_socket, writer&& end, std::error_code& ec) noexcept;

/// Receives an end sent by send_end. Blocks like recvmsg on `unix_socket`
/// until one arrives. Throws std::system_error: the errno of recvmsg,
/// connection_reset if the socket closed before an end came, or as
/// adopt_reader/adopt_writer.
reader receive_reader(int unix_socket);
writer receive_writer(int unix_socket);
reader receive_reader(int unix_socket, std::error_code& ec) noexcept;
writer receive_writer(int unix_socket, std::error_code& ec) noexcept;

/// True if the end belongs to a shared pipe (made with .shared = true or
/// adopted). Any thread that may use the end.
bool is_shared(reader const& end) noexcept;
bool is_shared(writer const& end) noexcept;

}  // namespace userpipe
