// Small conversions every test needs between text and the byte spans the
// pipe API takes, and a drain-to-EOF helper.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <userpipe/pipe.hpp>

namespace userpipe_support {

inline std::span<std::byte> bytes(std::string& s) {
  return {reinterpret_cast<std::byte*>(s.data()), s.size()};
}
inline std::span<std::byte const> bytes(std::string_view s) {
  return {reinterpret_cast<std::byte const*>(s.data()), s.size()};
}
inline std::string text(std::span<std::byte const> s) {
  return {reinterpret_cast<char const*>(s.data()), s.size()};
}

/// Reads until EOF (read_some returns 0); throws what read_some throws.
inline std::string read_all(userpipe::reader& r) {
  std::string out, buf(4096, '\0');
  while (std::size_t n = r.read_some(bytes(buf))) out.append(buf, 0, n);
  return out;
}

}  // namespace userpipe_support
