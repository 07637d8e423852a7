// userpipe/detail/memory.hpp — where a ring's bytes live.
//
// A ring asks for `capacity` bytes (a power of two) and gets a region plus
// one fact: whether the region is mirrored, i.e. whether the bytes at
// [capacity, 2 * capacity) are the same memory as [0, capacity), so that any
// span that starts inside the ring may run past its end without wrapping.
//
// Mirrored memory is a memfd whose pages are mapped twice, back to back, in
// one reserved range; its system calls live in src/memory.cpp so that this
// header (included by pipe.hpp) does not drag <sys/mman.h> into user code.
#pragma once

#include <cstddef>
#include <new>
#include <utility>

namespace userpipe::detail {

/// The unit of false sharing: every index, wait slot and counter block that
/// one side writes and the other reads starts a line of its own. 64 bytes on
/// x86-64 and on the ARMv8 cores we run on. Not
/// std::hardware_destructive_interference_size: GCC warns that its value may
/// change between compiler versions, and this one is part of the layout.
inline constexpr std::size_t cache_line = 64;

class memory {
 public:
  memory() noexcept = default;

  /// Plain heap memory, cache-line aligned. Throws std::bad_alloc.
  static memory heap(std::size_t capacity) {
    memory m;
    m.data_ = static_cast<std::byte*>(::operator new (capacity, std::align_val_t{cache_line}));
    m.size_ = capacity;
    return m;
  }

  /// `capacity` bytes (a power of two, rounded up to at least one page)
  /// mapped twice back to back. Throws std::system_error with the errno of
  /// the call that failed (memfd_create, ftruncate, mmap); nothing leaks.
  static memory mirrored(std::size_t capacity);
  /// Memory owned by someone else (a shared pipe's mapping, src/shared.cpp),
  /// which outlives this object.
  static memory borrowed(std::byte* data, std::size_t size, bool mirrored) noexcept {
    memory m;
    m.data_ = data;
    m.size_ = size;
    m.mirrored_ = mirrored;
    m.owned_ = false;
    return m;
  }
  /// What mirrored(capacity) would allocate: whole pages.
  static std::size_t mirrored_size(std::size_t capacity) noexcept;

  memory(memory&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)),
        mirrored_(other.mirrored_),
        owned_(other.owned_) {}
  memory& operator=(memory&& other) noexcept {
    if (this != &other) {
      deallocate();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
      mirrored_ = other.mirrored_;
      owned_ = other.owned_;
    }
    return *this;
  }
  ~memory() { deallocate(); }

  std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  bool mirrored() const noexcept { return mirrored_; }

 private:
  void deallocate() noexcept {
    if (data_ != nullptr && owned_) {
      if (mirrored_)
        unmap(data_, size_);
      else
        ::operator delete (data_, std::align_val_t{cache_line});
    }
    data_ = nullptr;
  }
  static void unmap(std::byte* data, std::size_t size) noexcept;

  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  bool mirrored_ = false;
  bool owned_ = true;
};

}  // namespace userpipe::detail
