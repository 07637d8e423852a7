// The promises of userpipe/cfile.hpp: C stdio round trips through a pipe,
// fclose closes the end, and errors reach ferror/errno.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <userpipe/cfile.hpp>

#include "support/bytes.hpp"

using userpipe::make_pipe;

namespace {
using userpipe_support::bytes;
using userpipe_support::read_all;

}  // namespace

TEST(CFile, FprintfThenFgetsRoundTripAcrossThreadsThroughATinyPipe) {
  auto [r, w] = make_pipe({.capacity = 16});
  std::FILE* out = userpipe::open_file(std::move(w));
  std::FILE* in = userpipe::open_file(std::move(r));
  ASSERT_NE(out, nullptr);
  ASSERT_NE(in, nullptr);
  int const count = 3000;
  std::thread producer([out] {
    for (int i = 0; i < count; ++i) std::fprintf(out, "line %d of %s\n", i, "the test");
    std::fclose(out);
  });
  char line[64];
  int n = 0;
  for (; std::fgets(line, sizeof line, in) != nullptr; ++n)
    ASSERT_EQ(std::string(line), "line " + std::to_string(n) + " of the test\n");
  producer.join();
  EXPECT_EQ(n, count);
  EXPECT_TRUE(std::feof(in));
  EXPECT_FALSE(std::ferror(in));
  std::fclose(in);
}

TEST(CFile, FcloseClosesTheWriterSoTheReaderGetsEof) {
  auto [r, w] = make_pipe();
  std::FILE* out = userpipe::open_file(std::move(w));
  EXPECT_FALSE(w.is_open());  // the FILE* owns it now
  std::fputs("buffered by stdio", out);
  EXPECT_EQ(r.available(), 0u);  // still in stdio's buffer
  std::fclose(out);
  EXPECT_EQ(read_all(r), "buffered by stdio");
}

TEST(CFile, FcloseOfAReadingFileClosesTheReader) {
  auto [r, w] = make_pipe();
  std::fclose(userpipe::open_file(std::move(r)));
  EXPECT_TRUE(w.reader_closed());
}

TEST(CFile, HasNoFileDescriptor) {
  auto [r, w] = make_pipe();
  std::FILE* out = userpipe::open_file(std::move(w));
  EXPECT_EQ(::fileno(out), -1);
  std::fclose(out);
}

TEST(CFile, WriteAfterReaderClosedIsAnErrorWithEpipe) {
  auto [r, w] = make_pipe();
  std::FILE* out = userpipe::open_file(std::move(w));
  r.close();
  std::fputs("nobody listens", out);
  errno = 0;
  EXPECT_EQ(std::fflush(out), EOF);
  EXPECT_EQ(errno, EPIPE);
  EXPECT_TRUE(std::ferror(out));
  std::fclose(out);
}

TEST(CFile, WriterCloseErrorIsAReadErrorAfterTheLastByte) {
  auto [r, w] = make_pipe();
  std::FILE* in = userpipe::open_file(std::move(r));
  w.write("x");
  w.close(std::make_error_code(std::errc::connection_reset));
  EXPECT_EQ(std::fgetc(in), 'x');
  errno = 0;
  EXPECT_EQ(std::fgetc(in), EOF);
  EXPECT_TRUE(std::ferror(in));
  EXPECT_EQ(errno, ECONNRESET);
  std::fclose(in);
}

TEST(CFile, AClosedEndIsBadFileDescriptorAndStaysWithTheCaller) {
  userpipe::writer none;
  std::error_code ec;
  EXPECT_EQ(userpipe::open_file(std::move(none), ec), nullptr);
  EXPECT_EQ(ec, std::errc::bad_file_descriptor);
  EXPECT_THROW(userpipe::open_file(userpipe::reader{}), std::system_error);
}
