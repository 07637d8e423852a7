// Makes a hung operation fail the test instead of hanging the suite.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <future>

namespace userpipe_support {

/// The future's value, which must be ready within a generous bound; a hung
/// thread cannot be joined, so past the bound the test reports and aborts.
template <class T>
T get_within(std::future<T>& f, std::chrono::seconds limit = std::chrono::seconds(120)) {
  if (f.wait_for(limit) != std::future_status::ready) {
    ADD_FAILURE() << "did not finish in " << limit.count() << " s";
    std::abort();
  }
  return f.get();
}

}  // namespace userpipe_support
