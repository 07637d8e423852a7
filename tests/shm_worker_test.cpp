// examples/shm_worker: a parent and the worker it spawns, connected by two
// shared-memory pipes; every record answered, checked by the example itself
// and by its summary line here.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <future>
#include <string>
#include <userpipe/process.hpp>

#include "support/run_example.hpp"

using namespace std::chrono_literals;

namespace {

userpipe_support::example_result run_example(std::vector<std::string> args) {
  return userpipe_support::run_example(USERPIPE_SHM_WORKER_EXAMPLE, std::move(args));
}

}  // namespace

TEST(ShmWorkerExample, WorkerAnswersEveryRecordInOrder) {
  auto r = run_example({"20000"});
  ASSERT_TRUE(r.status.success()) << r.out << r.err;
  EXPECT_NE(r.out.find("sent 20000 records"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("checked 20000 answers, 0 wrong; worker exited 0"), std::string::npos) << r.out;
  EXPECT_EQ(r.err, "");
}

TEST(ShmWorkerExample, NoRecordsStillEndsCleanly) {
  auto r = run_example({"0"});
  ASSERT_TRUE(r.status.success()) << r.out << r.err;
  EXPECT_NE(r.out.find("checked 0 answers, 0 wrong; worker exited 0"), std::string::npos) << r.out;
}

TEST(ShmWorkerExample, KilledWorkerIsAClosedEndNotAHang) {
  // The worker SIGKILLs itself after 100 answers; 20,000 records do not fit
  // the 1 MiB request ring, so the parent is blocked writing when it dies.
  ::setenv("SHM_WORKER_DIE_AFTER", "100", 1);
  auto r = run_example({"20000"});
  ::unsetenv("SHM_WORKER_DIE_AFTER");
  EXPECT_EQ(r.status.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("worker stopped reading: Broken pipe"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("checked 100 answers, 0 wrong; worker killed by signal 9"), std::string::npos)
      << r.out;
}
