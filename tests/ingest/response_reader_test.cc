// AsyncReadResponse over an in-memory stream: how a chunked 200 body that
// has already arrived is delivered.
#include "ingest/response_reader.h"

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/clock.h"
#include "gtest/gtest.h"
#include "tests/testing/memory_stream.h"

namespace chstream::ingest {
namespace {

namespace asio = boost::asio;

class RecordingVisitor : public ResponseVisitor {
 public:
  bool Cancelled() const override { return false; }
  void OnConnected(int http_status) override { status = http_status; }
  void OnBodyBytes(size_t n) override {
    ++body_reads;
    body_bytes += n;
  }
  void OnPartialLine(size_t) override {}
  void OnLine(std::string_view line) override { lines.emplace_back(line); }
  void OnHeartbeat() override {}
  void OnOversizedLine(std::string_view, size_t) override {}

  int status = 0;
  int body_reads = 0;
  size_t body_bytes = 0;
  std::vector<std::string> lines;
};

// A 200 response whose body is `lines`, one chunk per line (as the upstream
// sends them), then the last chunk.
std::string ChunkedResponse(const std::vector<std::string>& lines) {
  std::string out =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
      "Transfer-Encoding: chunked\r\n\r\n";
  for (const std::string& line : lines) {
    const std::string chunk = line + "\n";
    absl::StrAppend(&out, absl::StrFormat("%x", chunk.size()), "\r\n", chunk,
                    "\r\n");
  }
  absl::StrAppend(&out, "0\r\n\r\n");
  return out;
}

// Verifies that chunks already received are parsed in one go: 100 one-line
// chunks that arrive in one read are delivered in one body read, not one
// (or two: header, then data) per chunk. Beast's async_read_header turns
// the parser's eager mode off, which made every line a separate read (with
// its timer re-arm and Asio hand-offs: ~2 per event at full speed).
TEST(ResponseReaderTest, ChunksAlreadyReceivedAreParsedInOneRead) {
  std::vector<std::string> lines;
  for (int i = 0; i < 100; ++i) {
    lines.push_back(absl::StrCat(R"({"line":)", i, R"(,"pad":")",
                                 std::string(300, 'x'), R"("})"));
  }
  const std::string response = ChunkedResponse(lines);
  asio::io_context io;
  chstream::testing::MemoryStream stream(io, response,
                                         [] { return size_t{1} << 20; });
  RecordingVisitor visitor;
  FakeClock clock;
  std::optional<Outcome> outcome;
  AsyncReadResponse(stream, ResponseReadOptions{}, clock, visitor,
                    [&](Outcome o) { outcome = std::move(o); });
  io.run();
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(visitor.status, 200);
  EXPECT_EQ(visitor.lines, lines);
  EXPECT_LE(visitor.body_reads, 2) << "one body read per chunk or more";
  EXPECT_LE(stream.reads(), 3);
}

}  // namespace
}  // namespace chstream::ingest
