// A pipe costs no file descriptor: 100,000 pipes at once while the process
// may open only 64 descriptors.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <userpipe/pipe.hpp>
#include <vector>

TEST(ManyPipes, HundredThousandPipesUnderUlimit64) {
  rlimit limit{64, 64};
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
  limit.rlim_max = old.rlim_max;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &limit), 0);

  constexpr std::size_t count = 100'000;
  std::vector<std::pair<userpipe::reader, userpipe::writer>> pipes;
  pipes.reserve(count);
  for (std::size_t i = 0; i < count; ++i) pipes.push_back(userpipe::make_pipe({.capacity = 4096}));
  // Every one of them works, at once.
  for (std::size_t i = 0; i < count; ++i) {
    std::uint32_t v = static_cast<std::uint32_t>(i);
    pipes[i].second.write(std::as_bytes(std::span(&v, 1)));
  }
  for (std::size_t i = 0; i < count; ++i) {
    std::uint32_t v = 0;
    ASSERT_EQ(pipes[i].first.read(std::as_writable_bytes(std::span(&v, 1))), sizeof v);
    ASSERT_EQ(v, i);
  }
  pipes.clear();
  setrlimit(RLIMIT_NOFILE, &old);
}
