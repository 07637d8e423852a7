// Runs an example program as a child whose stdout and stderr arrive
// through userpipe ends, for the tests that check an example end to end.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <future>
#include <string>
#include <userpipe/process.hpp>
#include <vector>

namespace userpipe_support {

struct example_result {
  userpipe::exit_status status;
  std::string out, err;
};

/// Runs `program` with `args`; kills it if it has not finished in two
/// minutes (only a hang takes that long) and reaps it on every path.
inline example_result run_example(std::string const& program, std::vector<std::string> args) {
  using namespace std::chrono_literals;
  args.insert(args.begin(), program);
  auto c = userpipe::spawn(
      args, {.in = userpipe::stdio::null, .out = userpipe::stdio::pipe, .err = userpipe::stdio::pipe});
  auto read_all = [](userpipe::reader r) {
    std::string all, line;
    std::error_code ec;
    while (r.read_line(line, ec)) all += line + "\n";
    return all;
  };
  auto err = std::async(std::launch::async, read_all, std::move(c.err()));
  auto out = std::async(std::launch::async, read_all, std::move(c.out()));
  if (out.wait_for(120s) != std::future_status::ready) {
    ADD_FAILURE() << program << " did not finish";
    c.kill(SIGKILL);
  }
  example_result r;
  r.out = out.get();
  r.err = err.get();
  r.status = c.wait();
  return r;
}

}  // namespace userpipe_support
