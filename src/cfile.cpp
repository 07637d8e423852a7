// FILE* over a pipe's end with fopencookie: the cookie is the end itself.
#include "userpipe/cfile.hpp"

#include <cerrno>
#include <cstdio>
#include <memory>
#include <new>

namespace userpipe {

namespace {

// glibc's contract: write returns the count written, 0 on error (never
// negative); read returns the count, 0 at EOF, -1 on error; both set errno.

ssize_t write_cookie(void* cookie, char const* data, std::size_t size) {
  std::error_code ec;
  std::size_t const n = static_cast<writer*>(cookie)->write(std::string_view(data, size), ec);
  if (ec) errno = ec.value();
  return static_cast<ssize_t>(n);
}

ssize_t read_cookie(void* cookie, char* data, std::size_t size) {
  std::error_code ec;
  std::size_t const n =
      static_cast<reader*>(cookie)->read_some(std::span(reinterpret_cast<std::byte*>(data), size), ec);
  if (ec) {
    errno = ec.value();
    return -1;
  }
  return static_cast<ssize_t>(n);
}

template <class End>
int close_cookie(void* cookie) {
  delete static_cast<End*>(cookie);  // destroying the end closes it
  return 0;
}

template <class End>
std::FILE* open(End& end, char const* mode, cookie_io_functions_t functions, std::error_code& ec) noexcept {
  ec.clear();
  if (!end.is_open()) {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return nullptr;
  }
  auto* cookie = new (std::nothrow) End(std::move(end));
  if (cookie == nullptr) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    return nullptr;
  }
  std::FILE* file = ::fopencookie(cookie, mode, functions);
  if (file == nullptr) {
    ec = std::error_code(errno, std::generic_category());
    end = std::move(*cookie);  // the caller keeps its end
    delete cookie;
  }
  return file;
}

}  // namespace

std::FILE* open_file(writer&& w, std::error_code& ec) noexcept {
  return open(w, "w", {nullptr, write_cookie, nullptr, close_cookie<writer>}, ec);
}

std::FILE* open_file(reader&& r, std::error_code& ec) noexcept {
  return open(r, "r", {read_cookie, nullptr, nullptr, close_cookie<reader>}, ec);
}

std::FILE* open_file(writer&& w) {
  std::error_code ec;
  std::FILE* file = open_file(std::move(w), ec);
  if (ec) throw std::system_error(ec, "userpipe::open_file");
  return file;
}

std::FILE* open_file(reader&& r) {
  std::error_code ec;
  std::FILE* file = open_file(std::move(r), ec);
  if (ec) throw std::system_error(ec, "userpipe::open_file");
  return file;
}

}  // namespace userpipe
