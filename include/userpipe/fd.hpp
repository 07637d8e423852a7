// userpipe/fd.hpp — moving bytes between a file descriptor and a userpipe end
// with no buffer in between.
//
// pump(fd, writer) reads(2) straight into the span writer.prepare() hands
// out and commits what arrived; pump(reader, fd) writes(2) straight from the
// span reader.peek() hands out and consumes what went. One copy each way,
// made by the kernel, exactly what a kernel pipe costs; the userpipe side
// adds no system call. Use them to connect a socket, a terminal or a child
// process (see userpipe/process.hpp, which runs them for you) to code that
// speaks userpipe.
//
// A pump moves a whole stream and ends it:
//  - pump(fd, writer): at end-of-file on fd the writer is closed (the reader
//    gets EOF after the last byte). A read(2) error closes the writer with
//    that error (the reader gets every byte read before it, then the error)
//    and is also returned. A reader that goes away ends the pump with
//    broken_pipe (or the reason the reader closed with); the writer is then
//    left open, the fd untouched: closing it is what tells the fd's writer.
//  - pump(reader, fd): at EOF on the reader the pump returns; the fd is left
//    open (close it to send EOF). A writer that closed with an error ends the
//    pump with that error. write(2) failing with EPIPE (nobody reads the fd)
//    closes the reader with broken_pipe, so the userpipe writer's next write
//    fails with broken_pipe exactly as it would on a kernel pipe; any other
//    write(2) error closes the reader with that error. Either is returned.
//    SIGPIPE is blocked on the calling thread for the duration of the call
//    and a SIGPIPE the pump caused is consumed: the process is not killed,
//    whatever its SIGPIPE disposition.
//  - EINTR is retried. On a non-blocking fd, EAGAIN waits in poll(2) for the
//    fd to become ready (so a pump always blocks; it never returns early).
//  - The fd is never closed by a pump; it belongs to the caller.
//  - While the pump sleeps in read(2), write(2) or poll(2) on the fd, it
//    notices the userpipe peer closing only when the fd makes progress, the
//    same as a thread blocked on a kernel pipe.
//
// Threads: the calling thread uses the end for the whole call (the rule of
// pipe.hpp: one thread per end at a time). Blocks until the stream ends.
// Returns the number of bytes moved. Throws std::system_error carrying the
// error described above; the std::error_code& forms never throw and return
// the bytes moved before the error.
//
// Event loop: userpipe/asio_process.hpp (and boost_asio_process.hpp) has
// async_pump, the same two pumps on an Asio posix::stream_descriptor and an
// async end, waiting without a thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <system_error>

#include "userpipe/pipe.hpp"

namespace userpipe {

/// Copies fd into the writer until EOF, then closes the writer.
std::uint64_t pump(int fd, writer& to);
std::uint64_t pump(int fd, writer& to, std::error_code& ec) noexcept;

/// Copies the reader into fd until the reader's EOF.
std::uint64_t pump(reader& from, int fd);
std::uint64_t pump(reader& from, int fd, std::error_code& ec) noexcept;

namespace detail {
/// write(2) that cannot raise SIGPIPE: SIGPIPE is blocked on the calling
/// thread around the call, and one the call raised is consumed. Returns what
/// write returns (errno EPIPE where a pipe's reader is gone); EINTR is
/// retried. For the event-loop pumps, which run on the user's threads.
ssize_t write_without_sigpipe(int fd, std::span<std::byte const> data) noexcept;
}  // namespace detail

}  // namespace userpipe
