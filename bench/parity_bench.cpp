// Kernel-pipe parity (issue 10): the things programs rely on from a kernel
// pipe, raced against the kernel doing them. Names "<table>/<competitor>/<row>".
//
//   fan_in        4 writer threads -> 1 reader, records of <row> bytes:
//                 multi_writer clones, a kernel pipe written by 4 threads
//                 (writes <= PIPE_BUF are atomic there too), and one plain
//                 writer behind a std::mutex.
//   packets       64-byte messages thread to thread: write_message /
//                 read_message, pipe2(O_DIRECT), socketpair(SOCK_SEQPACKET).
//   epoll_fan_out one epoll thread serving 1000 pipes (edge-triggered), a
//                 writer thread writing 64-byte records to random pipes:
//                 userpipe ready descriptors against 1000 kernel pipes.
//
// Each iteration starts its writer threads afresh and moves a fixed batch,
// so a rate is batch / (iteration time), thread start included (a few tens
// of microseconds against tens of milliseconds).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <userpipe/multi_writer.hpp>
#include <userpipe/pipe.hpp>
#include <vector>

#include "main.hpp"

namespace {

[[noreturn]] void fail(char const* what) { throw std::system_error(errno, std::generic_category(), what); }

constexpr int fan_in_writers = 4;
constexpr std::size_t fan_in_bytes_per_writer = 1 << 20;

void write_fd(int fd, std::byte const* p, std::size_t n) {
  while (n != 0) {
    ssize_t const k = ::write(fd, p, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    p += k;
    n -= static_cast<std::size_t>(k);
  }
}

/// Runs `writers` threads, each calling write_one(id, record) `records`
/// times, while this thread calls read_some(buffer) until `total` bytes came.
template <class WriteOne, class ReadSome>
void fan_in_round(std::size_t record, WriteOne write_one, ReadSome read_some) {
  std::size_t const records = fan_in_bytes_per_writer / record;
  std::vector<std::thread> threads;
  for (int id = 0; id < fan_in_writers; ++id)
    threads.emplace_back([&, id] {
      std::vector<std::byte> data(record, std::byte(id));
      for (std::size_t i = 0; i < records; ++i) write_one(id, data);
    });
  std::vector<std::byte> buffer(65536);
  std::size_t const total = records * record * fan_in_writers;
  for (std::size_t got = 0; got < total;) {
    std::size_t const k = read_some(std::span(buffer));
    if (k == 0) break;
    got += k;
  }
  for (auto& t : threads) t.join();
}

void fan_in_multi_writer(benchmark::State& state) {
  auto const record = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    auto [r, w] = userpipe::make_pipe({.capacity = 65536});
    userpipe::multi_writer first(std::move(w));
    std::vector<userpipe::multi_writer> ends;
    for (int i = 1; i < fan_in_writers; ++i) ends.push_back(first.clone());
    ends.push_back(std::move(first));
    fan_in_round(
        record, [&](int id, std::span<std::byte const> d) { ends[id].write(d); },
        [&](std::span<std::byte> b) { return r.read_some(b); });
  }
  state.SetBytesProcessed(state.iterations() * fan_in_writers * (fan_in_bytes_per_writer / record) * record);
}

void fan_in_mutex(benchmark::State& state) {
  auto const record = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    auto [r, w] = userpipe::make_pipe({.capacity = 65536});
    std::mutex lock;
    fan_in_round(
        record,
        [&](int, std::span<std::byte const> d) {
          std::lock_guard guard(lock);
          w.write(d);
        },
        [&](std::span<std::byte> b) { return r.read_some(b); });
  }
  state.SetBytesProcessed(state.iterations() * fan_in_writers * (fan_in_bytes_per_writer / record) * record);
}

void fan_in_kernel(benchmark::State& state) {
  auto const record = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) fail("pipe2");
    fan_in_round(
        record, [&](int, std::span<std::byte const> d) { write_fd(fds[1], d.data(), d.size()); },
        [&](std::span<std::byte> b) {
          for (;;) {
            ssize_t const k = ::read(fds[0], b.data(), b.size());
            if (k >= 0) return static_cast<std::size_t>(k);
            if (errno != EINTR) fail("read");
          }
        });
    ::close(fds[0]);
    ::close(fds[1]);
  }
  state.SetBytesProcessed(state.iterations() * fan_in_writers * (fan_in_bytes_per_writer / record) * record);
}

// ---- packets ------------------------------------------------------------------

constexpr std::size_t packet_size = 64;
constexpr std::size_t packets_per_round = 1 << 16;

void packets_userpipe(benchmark::State& state) {
  std::uint64_t waits = 0, sleeps = 0;
  for (auto _ : state) {
    auto [r, w] = userpipe::make_pipe({.capacity = 65536});
    std::thread t([&w] {
      std::vector<std::byte> m(packet_size, std::byte{1});
      for (std::size_t i = 0; i < packets_per_round; ++i) w.write_message(m);
    });
    std::vector<std::byte> buf(packet_size);
    for (std::size_t i = 0; i < packets_per_round; ++i)
      if (r.read_message(buf) != packet_size) fail("short message");
    t.join();
    auto const s = r.stats();
    waits += s.reader_waits + s.writer_waits;
    sleeps += s.reader_sleeps + s.writer_sleeps;
  }
  state.SetItemsProcessed(state.iterations() * packets_per_round);
  auto const messages = static_cast<double>(state.iterations() * packets_per_round);
  state.counters["waits_per_message"] = static_cast<double>(waits) / messages;
  state.counters["sleeps_per_message"] = static_cast<double>(sleeps) / messages;
}

/// Packets over a descriptor pair: each write(2) one packet, each read(2) one.
void packets_fd(benchmark::State& state, int rfd, int wfd) {
  for (auto _ : state) {
    std::thread t([wfd] {
      std::vector<std::byte> m(packet_size, std::byte{1});
      for (std::size_t i = 0; i < packets_per_round; ++i) write_fd(wfd, m.data(), m.size());
    });
    std::vector<std::byte> buf(4096);  // larger than a packet: shows the boundary is kept
    for (std::size_t i = 0; i < packets_per_round;) {
      ssize_t const k = ::read(rfd, buf.data(), buf.size());
      if (k < 0 && errno == EINTR) continue;
      if (k != static_cast<ssize_t>(packet_size)) fail("packet");
      ++i;
    }
    t.join();
  }
  state.SetItemsProcessed(state.iterations() * packets_per_round);
}

void packets_kernel_pipe(benchmark::State& state) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_DIRECT) != 0) fail("pipe2(O_DIRECT)");
  packets_fd(state, fds[0], fds[1]);
  ::close(fds[0]);
  ::close(fds[1]);
}

void packets_seqpacket(benchmark::State& state) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) fail("socketpair");
  packets_fd(state, fds[0], fds[1]);
  ::close(fds[0]);
  ::close(fds[1]);
}

// ---- epoll fan-out --------------------------------------------------------------

constexpr std::size_t fan_out_pipes = 1000;
constexpr std::size_t fan_out_records = 200'000;
constexpr std::size_t record_size = 64;

/// One epoll set (edge-triggered) over `fds`; drains with `drain(i)` (returns
/// records read from pipe i until it would block) until `want` records came.
template <class Drain>
void epoll_serve(int ep, std::size_t want, Drain drain) {
  std::vector<epoll_event> events(256);
  for (std::size_t got = 0; got < want;) {
    int const n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("epoll_wait");
    }
    for (int e = 0; e < n; ++e) got += drain(events[e].data.u64);
  }
}

int make_epoll() {
  int const ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) fail("epoll_create1");
  return ep;
}

void watch(int ep, int fd, std::size_t i) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.u64 = i;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) fail("epoll_ctl");
}

void fan_out_userpipe(benchmark::State& state) {
  std::vector<userpipe::reader> readers;
  std::vector<userpipe::writer> writers;
  int const ep = make_epoll();
  for (std::size_t i = 0; i < fan_out_pipes; ++i) {
    auto [r, w] = userpipe::make_pipe({.capacity = 4096});
    watch(ep, r.ready_descriptor(), i);
    readers.push_back(std::move(r));
    writers.push_back(std::move(w));
  }
  for (auto _ : state) {
    std::thread t([&writers] {
      std::mt19937 rng(1);
      std::byte record[record_size] = {};
      for (std::size_t m = 0; m < fan_out_records; ++m) writers[rng() % fan_out_pipes].write(record);
    });
    std::byte buf[4096];
    epoll_serve(ep, fan_out_records, [&](std::size_t i) {
      std::size_t bytes = 0;
      for (;;) {
        std::error_code ec;
        std::size_t const k = readers[i].try_read_some(buf, ec);
        if (k == 0) break;
        bytes += k;
      }
      return bytes / record_size;  // records are written whole, read in multiples of them
    });
    t.join();
  }
  ::close(ep);
  state.SetItemsProcessed(state.iterations() * fan_out_records);
}

void fan_out_kernel(benchmark::State& state) {
  std::vector<int> rfds, wfds;
  int const ep = make_epoll();
  for (std::size_t i = 0; i < fan_out_pipes; ++i) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) fail("pipe2");
    ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
    ::fcntl(fds[1], F_SETPIPE_SZ, 4096);  // the same room as the userpipes
    watch(ep, fds[0], i);
    rfds.push_back(fds[0]);
    wfds.push_back(fds[1]);
  }
  for (auto _ : state) {
    std::thread t([&wfds] {
      std::mt19937 rng(1);
      std::byte record[record_size] = {};
      for (std::size_t m = 0; m < fan_out_records; ++m)
        write_fd(wfds[rng() % fan_out_pipes], record, record_size);
    });
    std::byte buf[4096];
    epoll_serve(ep, fan_out_records, [&](std::size_t i) {
      std::size_t bytes = 0;
      for (;;) {
        ssize_t const k = ::read(rfds[i], buf, sizeof buf);
        if (k > 0) {
          bytes += static_cast<std::size_t>(k);
          continue;
        }
        if (k < 0 && errno == EINTR) continue;
        break;  // EAGAIN
      }
      return bytes / record_size;
    });
    t.join();
  }
  ::close(ep);
  for (int fd : rfds) ::close(fd);
  for (int fd : wfds) ::close(fd);
  state.SetItemsProcessed(state.iterations() * fan_out_records);
}

void register_all() {
  for (std::int64_t record : {64, 512}) {
    auto row = "/" + std::to_string(record);
    benchmark::RegisterBenchmark(("fan_in/userpipe_multi_writer" + row).c_str(), fan_in_multi_writer)
        ->Arg(record)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("fan_in/kernel_pipe" + row).c_str(), fan_in_kernel)
        ->Arg(record)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("fan_in/userpipe_mutex" + row).c_str(), fan_in_mutex)
        ->Arg(record)
        ->UseRealTime();
  }
  benchmark::RegisterBenchmark("packets/userpipe/64", packets_userpipe)->UseRealTime();
  benchmark::RegisterBenchmark("packets/kernel_pipe_o_direct/64", packets_kernel_pipe)->UseRealTime();
  benchmark::RegisterBenchmark("packets/seqpacket/64", packets_seqpacket)->UseRealTime();
  benchmark::RegisterBenchmark("epoll_fan_out/userpipe/1000", fan_out_userpipe)->UseRealTime();
  benchmark::RegisterBenchmark("epoll_fan_out/kernel_pipe/1000", fan_out_kernel)->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  return bench::run(argc, argv);
}
