// Waiting for a state instead of for a time: a test of "a blocked X wakes
// on Y" must do Y only once X really blocks, or under load it passes without
// exercising the wake path at all.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <thread>
#include <userpipe/pipe.hpp>

namespace userpipe_support {

/// Polls `done()` every millisecond; true once it holds. Past a generous
/// bound it reports a failure naming `what` and returns false (never asserts
/// a time: the bound only keeps a broken test from hanging the suite).
template <class Done>
bool wait_until(Done done, char const* what, std::chrono::seconds limit = std::chrono::seconds(60)) {
  auto const give_up = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) {
      ADD_FAILURE() << "never happened: " << what;
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

/// Until the pipe's counter `which` (reader_sleeps or writer_sleeps) has
/// reached `at_least`: the side has set its wait slot and gone to the futex,
/// so a wake or close from now on must go through the wake path. `end` is
/// either end of the pipe; stats() may be read from any thread.
template <class End>
bool wait_until_asleep(End const& end, std::uint64_t userpipe::pipe_stats::*which,
                       std::uint64_t at_least = 1) {
  return wait_until([&] { return end.stats().*which >= at_least; }, "the peer went to sleep");
}

/// The system call thread `tid` of this process is in (blocked in or about
/// to return from), from /proc; -1 if it runs in user space or is unknown.
inline long current_syscall(pid_t tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/syscall");
  std::string first;
  if (!(in >> first) || first == "running") return -1;
  try {
    return std::stol(first);
  } catch (...) {
    return -1;
  }
}

}  // namespace userpipe_support
