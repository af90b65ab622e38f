#include "ingest/line_framer.h"

#include <cstdint>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chstream::ingest {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Records every callback as a string: "L:<line>", "H", "O:<size>:<prefix>".
class Recorder : public LineFramer::Visitor {
 public:
  void OnLine(std::string_view line) override {
    events.push_back("L:" + std::string(line));
  }
  void OnHeartbeat() override { events.push_back("H"); }
  void OnOversizedLine(std::string_view prefix, size_t total_bytes) override {
    events.push_back("O:" + std::to_string(total_bytes) + ":" +
                     std::string(prefix));
    prefix_sizes.push_back(prefix.size());
  }
  std::vector<std::string> events;
  std::vector<size_t> prefix_sizes;
};

std::vector<std::string> FrameChunks(
    const std::vector<std::string_view>& chunks, size_t* dropped = nullptr,
    size_t max_line_bytes = 8 << 20) {
  LineFramer framer(max_line_bytes);
  Recorder recorder;
  for (std::string_view chunk : chunks) framer.Feed(chunk, recorder);
  const size_t partial = framer.Finish();
  if (dropped != nullptr) *dropped = partial;
  return recorder.events;
}

std::string ReadSamples() {
  std::ifstream in("tests/ingest/testdata/upstream-events.ndjson",
                   std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The expected events for `text`, computed independently of the framer:
// split on '\n', strip one '\r', whitespace-only lines are heartbeats.
std::vector<std::string> Reference(std::string_view text) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t nl = text.find('\n'); nl != std::string_view::npos;
       nl = text.find('\n', start)) {
    std::string line(text.substr(start, nl - start));
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      out.push_back("H");
    } else {
      out.push_back("L:" + line);
    }
    start = nl + 1;
  }
  return out;
}

TEST(LineFramerTest, SamplesFileHasSevenEvents) {
  const std::string samples = ReadSamples();
  ASSERT_FALSE(samples.empty()) << "testdata missing";
  const std::vector<std::string> expected = Reference(samples);
  ASSERT_EQ(expected.size(), 7u);
  for (const std::string& e : expected) EXPECT_EQ(e.substr(0, 3), "L:{");
  size_t dropped = 1;
  EXPECT_EQ(FrameChunks({samples}, &dropped), expected);  // coalesced
  EXPECT_EQ(dropped, 0u);
}

// Verifies the whole sample file split into two chunks at every byte offset
// (so at every split point of every line, including the '\n's) frames to the
// same lines.
TEST(LineFramerTest, SamplesSplitAtEveryOffset) {
  const std::string samples = ReadSamples();
  ASSERT_FALSE(samples.empty());
  const std::vector<std::string> expected = Reference(samples);
  const std::string_view all(samples);
  for (size_t cut = 0; cut <= all.size(); ++cut) {
    size_t dropped = 1;
    ASSERT_EQ(FrameChunks({all.substr(0, cut), all.substr(cut)}, &dropped),
              expected)
        << "cut at " << cut;
    ASSERT_EQ(dropped, 0u);
  }
}

TEST(LineFramerTest, SamplesByteByByte) {
  const std::string samples = ReadSamples();
  ASSERT_FALSE(samples.empty());
  std::vector<std::string_view> bytes;
  for (size_t i = 0; i < samples.size(); ++i) {
    bytes.push_back(std::string_view(samples).substr(i, 1));
  }
  EXPECT_EQ(FrameChunks(bytes), Reference(samples));
}

// Verifies random multi-chunk splits (fixed seed) of the samples with
// heartbeats ("\n", "\r\n", " \t\n") inserted between every pair of lines.
TEST(LineFramerTest, SamplesWithHeartbeatsInRandomChunks) {
  const std::string samples = ReadSamples();
  ASSERT_FALSE(samples.empty());
  std::string stream;
  const char* const beats[] = {"\n", "\r\n", " \t\n"};
  size_t start = 0, k = 0;
  for (size_t nl = samples.find('\n'); nl != std::string::npos;
       nl = samples.find('\n', start)) {
    stream += beats[k++ % 3];
    stream += samples.substr(start, nl - start);
    stream += (k % 2 == 0) ? "\r\n" : "\n";
    start = nl + 1;
  }
  const std::vector<std::string> expected = Reference(stream);
  ASSERT_EQ(expected.size(), 14u);
  std::mt19937 rng(12345);
  for (int round = 0; round < 500; ++round) {
    std::vector<std::string_view> chunks;
    size_t pos = 0;
    while (pos < stream.size()) {
      const size_t len = std::uniform_int_distribution<size_t>(0, 300)(rng);
      chunks.push_back(std::string_view(stream).substr(pos, len));
      pos += len;
    }
    ASSERT_EQ(FrameChunks(chunks), expected) << "round " << round;
  }
}

TEST(LineFramerTest, MultiByteUtf8SplitAnywhere) {
  // 2-, 3- and 4-byte characters: é, €, 😀.
  const std::string line =
      "{\"name\":\"Caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"}";
  const std::string stream = line + "\n";
  for (size_t a = 0; a <= stream.size(); ++a) {
    for (size_t b = a; b <= stream.size(); ++b) {
      const std::string_view s(stream);
      ASSERT_THAT(
          FrameChunks({s.substr(0, a), s.substr(a, b - a), s.substr(b)}),
          ElementsAre("L:" + line))
          << a << "," << b;
    }
  }
}

TEST(LineFramerTest, StripsOneTrailingCarriageReturn) {
  EXPECT_THAT(FrameChunks({"{\"a\":1}\r\n"}), ElementsAre("L:{\"a\":1}"));
  EXPECT_THAT(FrameChunks({"{\"a\":1}\r", "\n"}), ElementsAre("L:{\"a\":1}"));
  // Only one: a second '\r' stays part of the line.
  EXPECT_THAT(FrameChunks({"{\"a\":1}\r\r\n"}), ElementsAre("L:{\"a\":1}\r"));
}

TEST(LineFramerTest, WhitespaceOnlyLinesAreHeartbeats) {
  EXPECT_THAT(FrameChunks({"\n", "\r\n", "  \n", "\t \r\n", "\r\r\n"}),
              ElementsAre("H", "H", "H", "H", "H"));
  EXPECT_THAT(FrameChunks({"\n\n\n"}), ElementsAre("H", "H", "H"));
  // A line with other content is not a heartbeat, even if it is short.
  EXPECT_THAT(FrameChunks({" x \n"}), ElementsAre("L: x "));
}

TEST(LineFramerTest, HeartbeatAloneInAChunkDoesNotMergeLines) {
  // The S14 pitfall: a lone "\n" chunk is the terminator of the line before.
  EXPECT_THAT(FrameChunks({"{\"a\":1}", "\n", "{\"b\":2}", "\n", "\n"}),
              ElementsAre("L:{\"a\":1}", "L:{\"b\":2}", "H"));
}

TEST(LineFramerTest, DropsPartialLineAtEof) {
  size_t dropped = 0;
  EXPECT_THAT(FrameChunks({"{\"a\":1}\n{\"b\":"}, &dropped),
              ElementsAre("L:{\"a\":1}"));
  EXPECT_EQ(dropped, 5u);
  EXPECT_THAT(FrameChunks({"{\"a\":1}\n"}, &dropped),
              ElementsAre("L:{\"a\":1}"));
  EXPECT_EQ(dropped, 0u);
  EXPECT_THAT(FrameChunks({}, &dropped), IsEmpty());
  EXPECT_EQ(dropped, 0u);
}

TEST(LineFramerTest, FinishResetsForTheNextStream) {
  LineFramer framer;
  Recorder recorder;
  framer.Feed("{\"partial\":", recorder);
  EXPECT_EQ(framer.buffered(), 11u);
  EXPECT_EQ(framer.Finish(), 11u);
  EXPECT_EQ(framer.buffered(), 0u);
  framer.Feed("{\"next\":1}\n", recorder);
  EXPECT_THAT(recorder.events, ElementsAre("L:{\"next\":1}"));
  EXPECT_EQ(framer.Finish(), 0u);
}

TEST(LineFramerTest, LineInsideOneChunkIsAViewIntoTheChunk) {
  struct PointerRecorder : LineFramer::Visitor {
    void OnLine(std::string_view line) override { lines.push_back(line); }
    void OnHeartbeat() override {}
    void OnOversizedLine(std::string_view, size_t) override {}
    std::vector<std::string_view> lines;
  } recorder;
  LineFramer framer;
  const std::string chunk = "{\"a\":1}\n{\"b\":2}\n{\"c\"";
  framer.Feed(chunk, recorder);
  ASSERT_EQ(recorder.lines.size(), 2u);
  EXPECT_EQ(recorder.lines[0].data(), chunk.data());
  EXPECT_EQ(recorder.lines[1].data(), chunk.data() + 8);
  EXPECT_EQ(framer.buffered(), 4u);  // only the incomplete tail is copied
}

TEST(LineFramerTest, LineOfExactlyMaxBytesIsAccepted) {
  const std::string line(16, 'x');
  EXPECT_THAT(FrameChunks({line + "\n"}, nullptr, 16),
              ElementsAre("L:" + line));
  EXPECT_THAT(
      FrameChunks({line.substr(0, 9), line.substr(9) + "\n"}, nullptr, 16),
      ElementsAre("L:" + line));
}

TEST(LineFramerTest, OversizedLineReportedOnceThenFramingResumes) {
  const std::string big(17, 'y');
  // In one chunk, split across chunks, and byte by byte.
  const std::string stream = "{\"a\":1}\n" + big + "\n{\"b\":2}\n";
  const std::vector<std::string> expected = {"L:{\"a\":1}", "O:17:" + big,
                                             "L:{\"b\":2}"};
  EXPECT_EQ(FrameChunks({stream}, nullptr, 16), expected);
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    const std::string_view s(stream);
    ASSERT_EQ(FrameChunks({s.substr(0, cut), s.substr(cut)}, nullptr, 16),
              expected)
        << cut;
  }
  std::vector<std::string_view> bytes;
  for (size_t i = 0; i < stream.size(); ++i) {
    bytes.push_back(std::string_view(stream).substr(i, 1));
  }
  EXPECT_EQ(FrameChunks(bytes, nullptr, 16), expected);
}

TEST(LineFramerTest, OversizedPartialLineAtEofIsCountedNotReported) {
  size_t dropped = 0;
  EXPECT_THAT(FrameChunks({"{\"a\":1}\n", std::string(40, 'z')}, &dropped, 16),
              ElementsAre("L:{\"a\":1}"));
  EXPECT_EQ(dropped, 40u);
}

// Verifies that a multi-megabyte line keeps only its first 64 KiB, that the
// framer never holds more than max_line_bytes + 64 KiB, and that the total
// size is exact, with a cap above and below 64 KiB and any chunking.
TEST(LineFramerTest, OversizedLineKeepsA64KiBPrefixAndBoundedMemory) {
  constexpr size_t kTotal = 3 << 20;
  std::string line(kTotal, 'a');
  for (size_t i = 0; i < kTotal; ++i) line[i] = static_cast<char>('a' + i % 26);
  const std::string stream = line + "\n{\"after\":true}\n";

  for (size_t kMax : {size_t{100} << 10, size_t{1000}})
  for (size_t chunk_size : {size_t{300}, size_t{1000}, size_t{65536},
                            stream.size()}) {
    SCOPED_TRACE(testing::Message() << "max " << kMax << ", chunks of "
                                    << chunk_size);
    LineFramer framer(kMax);
    Recorder recorder;
    size_t max_buffered = 0;
    for (size_t pos = 0; pos < stream.size(); pos += chunk_size) {
      framer.Feed(std::string_view(stream).substr(pos, chunk_size), recorder);
      max_buffered = std::max(max_buffered, framer.buffered());
    }
    EXPECT_LE(max_buffered, kMax + LineFramer::kOversizedPrefixBytes);
    ASSERT_EQ(recorder.events.size(), 2u) << chunk_size;
    ASSERT_EQ(recorder.prefix_sizes.size(), 1u);
    EXPECT_EQ(recorder.prefix_sizes[0], LineFramer::kOversizedPrefixBytes);
    // (Compared as a bool: a failure must not print 64 KiB twice.)
    EXPECT_TRUE(recorder.events[0] ==
                "O:" + std::to_string(kTotal) + ":" +
                    line.substr(0, LineFramer::kOversizedPrefixBytes));
    EXPECT_EQ(recorder.events[1], "L:{\"after\":true}");
    EXPECT_EQ(framer.Finish(), 0u);
  }
}

TEST(LineFramerTest, OversizedWhitespaceLineIsOversizedNotHeartbeat) {
  EXPECT_THAT(FrameChunks({std::string(20, ' ') + "\n"}, nullptr, 16),
              ElementsAre("O:20:" + std::string(20, ' ')));
}

}  // namespace
}  // namespace chstream::ingest
