// A worker process fed through shared-memory pipes.
//
// The parent streams JSON records, one per line, to a worker it spawns (this
// same program, started with --worker); the worker parses each line where
// it lies in the shared ring (reader::read_line_view, no copy) and answers
// each with one JSON line through a second shared pipe; the parent checks
// every answer. No pump thread and no system call while both sides are
// busy: the bytes go through memory both processes map.
//
//   shm_worker [RECORDS]     (default 100000)
//
// How the worker gets its ends: the parent turns each end into a
// descriptor (to_descriptor) and spawn places them at 3 and 4 in the child
// (spawn_options::descriptors); the command line tells the worker which
// numbers it got, and adopt_reader/adopt_writer turn them back into ends.
// Prints a summary and exits 0 when every answer was right, 1 otherwise.
// A worker that dies (SHM_WORKER_DIE_AFTER=N makes it SIGKILL itself after
// N answers) is a closed end to the parent: its writes fail with
// broken_pipe, its answers end, and it reports what it got.
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <userpipe/pipe.hpp>
#include <userpipe/process.hpp>
#include <userpipe/shared.hpp>

namespace {

/// The record the parent sends: an order of a few items.
nlohmann::json make_record(std::uint64_t id) {
  nlohmann::json items = nlohmann::json::array();
  for (std::uint64_t k = 0; k < 1 + id % 5; ++k)
    items.push_back({{"sku", "sku-" + std::to_string((id * 7 + k) % 1000)}, {"qty", 1 + (id + k) % 9}});
  return {{"id", id}, {"customer", "customer-" + std::to_string(id % 313)}, {"items", items}};
}

/// What the worker must answer to it: the id, the number of items and the
/// total quantity.
struct answer {
  std::uint64_t id, items, quantity;
};

answer expected(std::uint64_t id) {
  answer a{id, 1 + id % 5, 0};
  for (std::uint64_t k = 0; k < a.items; ++k) a.quantity += 1 + (id + k) % 9;
  return a;
}

/// The worker: reads records from descriptor `in`, answers on `out`, until
/// the parent closes the requests.
int worker(int in, int out) {
  userpipe::reader requests = userpipe::adopt_reader(in);
  userpipe::writer answers = userpipe::adopt_writer(out);
  // For the test of a dying worker: SIGKILL itself after this many answers.
  char const* die = std::getenv("SHM_WORKER_DIE_AFTER");
  std::uint64_t left = die != nullptr ? std::strtoull(die, nullptr, 10) : ~std::uint64_t{0};
  std::string_view line;
  std::string reply;
  while (requests.read_line_view(line)) {
    if (left-- == 0) ::raise(SIGKILL);
    // Parsed straight from the shared ring: `line` points into it.
    auto const record = nlohmann::json::parse(line.begin(), line.end());
    std::uint64_t quantity = 0;
    for (auto const& item : record.at("items")) quantity += item.at("qty").get<std::uint64_t>();
    reply =
        nlohmann::json{{"id", record.at("id")}, {"items", record.at("items").size()}, {"quantity", quantity}}
            .dump();
    reply += '\n';
    answers.write(reply);
  }
  answers.close();
  return 0;
}

/// The parent: starts the worker, streams `count` records, checks the
/// answers on another thread (so that neither pipe can fill up while the
/// other side waits for the first).
int parent(char const* self, std::uint64_t count) {
  auto [request_reader, requests] = userpipe::make_pipe({.capacity = 1 << 20, .shared = true});
  auto [answers, answer_writer] = userpipe::make_pipe({.capacity = 1 << 16, .shared = true});
  int const worker_in = userpipe::to_descriptor(std::move(request_reader));
  int const worker_out = userpipe::to_descriptor(std::move(answer_writer));
  auto child = userpipe::spawn({self, "--worker", "3", "4"},
                               {.search_path = false, .descriptors = {{3, worker_in}, {4, worker_out}}});
  // The child has its copies; ours would keep the ends alive after it died.
  ::close(worker_in);
  ::close(worker_out);

  auto const start = std::chrono::steady_clock::now();
  std::uint64_t checked = 0, wrong = 0;
  std::thread checker([&, answers = std::move(answers)]() mutable {
    std::string_view line;
    std::error_code ec;
    while (answers.read_line_view(line, ec)) {
      auto const got = nlohmann::json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
      answer const want = expected(checked);
      auto field = [&](char const* name) {
        auto it = got.find(name);
        return it != got.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : ~std::uint64_t{0};
      };
      if (field("id") != want.id || field("items") != want.items || field("quantity") != want.quantity) {
        if (++wrong <= 5)
          std::fprintf(stderr, "wrong answer to record %llu: %.*s\n",
                       static_cast<unsigned long long>(checked), static_cast<int>(line.size()), line.data());
      }
      ++checked;
    }
  });

  std::uint64_t bytes = 0, sent = 0;
  std::string text;
  std::error_code ec;
  for (; sent < count; ++sent) {
    text = make_record(sent).dump();
    text += '\n';
    bytes += requests.write(text, ec);
    if (ec) {  // the worker is gone (it closed its end, or died: the same to us)
      std::fprintf(stderr, "shm_worker: worker stopped reading: %s\n", ec.message().c_str());
      break;
    }
  }
  requests.close();  // the worker reads EOF after the last record, then closes its answers
  checker.join();
  auto const status = child.wait();
  double const seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::printf("sent %llu records (%.1f MB) in %.3f s, checked %llu answers, %llu wrong; worker %s %d\n",
              static_cast<unsigned long long>(sent), static_cast<double>(bytes) / 1e6, seconds,
              static_cast<unsigned long long>(checked), static_cast<unsigned long long>(wrong),
              status.exited() ? "exited" : "killed by signal", status.exited() ? status.code : status.signal);
  return status.success() && checked == count && wrong == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc == 4 && std::string_view(argv[1]) == "--worker")
    return worker(std::atoi(argv[2]), std::atoi(argv[3]));
  std::uint64_t const count = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 100000;
  // The worker is this program: /proc/self/exe names it whatever argv[0] says.
  return parent("/proc/self/exe", count);
} catch (std::exception const& e) {
  std::fprintf(stderr, "shm_worker: %s\n", e.what());
  return 1;
}
