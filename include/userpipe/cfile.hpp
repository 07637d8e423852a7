// userpipe/cfile.hpp — a pipe's end as a C FILE*, for C APIs that write to
// or read from one (fprintf, fputs, fgets, fread, a library's logging sink).
//
//   auto [r, w] = userpipe::make_pipe();
//   std::FILE* out = userpipe::open_file(std::move(w));
//   std::fprintf(out, "%d\n", 42);
//   std::fclose(out);               // flushes, then closes the writer: EOF
//
// The FILE* is made with glibc's fopencookie: stdio keeps its own buffer
// (fflush or a full buffer hands it to the pipe), and the FILE* owns the
// end: fclose closes it (the reader sees EOF after the last byte; a closed
// reader makes the writer's next write fail with broken_pipe).
//
// Such a FILE* has no file descriptor: fileno() returns -1, and it cannot
// be handed to a child process (as its stdin/stdout, or through exec),
// nor to poll/select. A child needs a kernel descriptor: pump the pipe
// into one instead.
//
// Errors: a failed write sets the stream's error indicator (ferror) and
// errno (EPIPE when the reader is gone); a writer's close error is seen by
// the reading FILE* as a read error with that errno, after the last byte.
// Threads: the FILE* is its end: one thread at a time uses it (stdio's own
// lock does not make two threads on one end safe for the pipe).
#pragma once

#include <cstdio>
#include <system_error>

#include "userpipe/pipe.hpp"

namespace userpipe {

/// A FILE* opened for writing ("w") that owns `w`. Any thread; does not
/// block. On failure throws std::system_error (errno of fopencookie) and
/// leaves `w` with the caller, untouched; the error_code form returns
/// nullptr instead.
std::FILE* open_file(writer&& w);
std::FILE* open_file(writer&& w, std::error_code& ec) noexcept;

/// A FILE* opened for reading ("r") that owns `r`. Reads block like
/// reader::read_some; end-of-file is feof. Same errors as above.
std::FILE* open_file(reader&& r);
std::FILE* open_file(reader&& r, std::error_code& ec) noexcept;

}  // namespace userpipe
