#include "sluice/event_stream.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace sluice {
namespace {

// What a reader made of a stream: the data of each event dispatched by a blank line, and the
// data of the event still open at finish(), if it had data.
struct Events {
  std::vector<std::string> dispatched;
  std::optional<std::string> open_at_finish;
  bool operator==(const Events&) const = default;
};

void PrintTo(const Events& events, std::ostream* os) {
  *os << "{";
  for (const std::string& data : events.dispatched) *os << testing::PrintToString(data) << " ";
  *os << "| open: "
      << (events.open_at_finish ? testing::PrintToString(*events.open_at_finish) : "none") << "}";
}

Events read(const std::vector<std::string_view>& pieces) {
  EventStreamReader reader;
  Events events;
  std::string data;
  for (const std::string_view piece : pieces) {
    const auto* p = reinterpret_cast<const uint8_t*>(piece.data());
    const uint8_t* const end = p + piece.size();
    while (p < end) {
      const EventStreamReader::Piece got = reader.read(p, end);
      EXPECT_GT(got.rest, p) << "every piece consumes bytes";
      EXPECT_LE(got.rest, end);
      p = got.rest;
      switch (got.kind) {
        case EventStreamReader::Kind::kData:
          EXPECT_FALSE(got.data.empty());
          data.append(reinterpret_cast<const char*>(got.data.data()), got.data.size());
          break;
        case EventStreamReader::Kind::kEventEnd:
          events.dispatched.push_back(data);
          data.clear();
          break;
        case EventStreamReader::Kind::kNeedMore:
          EXPECT_EQ(p, end);
          break;
      }
    }
  }
  if (reader.finish()) events.open_at_finish = data;
  EXPECT_FALSE(reader.finish()) << "finish() reports the open event once";
  return events;
}

// The same through feed(), the loop with callbacks that the scanners use.
Events feed(const std::vector<std::string_view>& pieces) {
  EventStreamReader reader;
  Events events;
  std::string data;
  for (const std::string_view piece : pieces) {
    reader.feed(
        {reinterpret_cast<const uint8_t*>(piece.data()), piece.size()},
        [&](std::span<const uint8_t> bytes) {
          data.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        },
        [&] {
          events.dispatched.push_back(data);
          data.clear();
        });
  }
  if (reader.finish()) events.open_at_finish = data;
  return events;
}

// The same events however the stream is cut: whole, at every split point, byte by byte, and
// through feed().
Events read_every_way(std::string_view stream) {
  const Events whole = read({stream});
  EXPECT_EQ(feed({stream}), whole) << "through feed()";
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    EXPECT_EQ(read({stream.substr(0, cut), stream.substr(cut)}), whole) << "split at " << cut;
  }
  std::vector<std::string_view> bytes;
  for (std::size_t i = 0; i < stream.size(); ++i) bytes.push_back(stream.substr(i, 1));
  EXPECT_EQ(read(bytes), whole) << "byte by byte";
  EXPECT_EQ(feed(bytes), whole) << "byte by byte through feed()";
  return whole;
}

struct StreamCase {
  const char* name;
  std::string stream;
  Events expected;
};

std::string case_name(const testing::TestParamInfo<StreamCase>& info) {
  return info.param.name;
}

class Framing : public testing::TestWithParam<StreamCase> {};

TEST_P(Framing, HandsOverEachEventsDataHoweverTheStreamIsCut) {
  EXPECT_EQ(read_every_way(GetParam().stream), GetParam().expected);
}

const std::optional<std::string> kNone;

const StreamCase kCases[] = {
    // Line ends.
    {"LfLineEnds", "data: a\n\ndata: b\n\n", {{"a", "b"}, kNone}},
    {"CrLineEnds", "data: a\r\rdata: b\r\r", {{"a", "b"}, kNone}},
    {"CrLfLineEnds", "data: a\r\n\r\ndata: b\r\n\r\n", {{"a", "b"}, kNone}},
    {"CrLfIsOneLineEndNotTwo", "data: a\r\ndata: b\r\n\r\n", {{"a\nb"}, kNone}},
    {"LfThenCrIsTwoLineEnds", "data: a\n\rdata: b\n\n", {{"a", "b"}, kNone}},
    {"MixedLineEnds", "data: a\r\ndata: b\ndata: c\rdata: d\r\r\n", {{"a\nb\nc\nd"}, kNone}},
    {"CrLfThenLfEndsTheEvent", "data: a\r\n\n", {{"a"}, kNone}},
    {"BlankLinesWithoutDataDispatchNothing", "\n\r\n\r\n\ndata: a\n\n\n\r\r", {{"a"}, kNone}},
    // Byte order mark.
    {"ByteOrderMarkDropped",
     "\xEF\xBB\xBF"
     "data: a\n\n",
     {{"a"}, kNone}},
    {"SecondByteOrderMarkIsPartOfTheName",
     "\xEF\xBB\xBF\xEF\xBB\xBF"
     "data: a\n\ndata: b\n\n",
     {{"b"}, kNone}},
    {"ByteOrderMarkAfterTheFirstLineIsPartOfTheName",
     "\n\xEF\xBB\xBF"
     "data: a\n\ndata: b\n\n",
     {{"b"}, kNone}},
    {"PartialByteOrderMarkSpoilsOnlyItsLine",
     "\xEF\xBB"
     "data: a\n\ndata: b\n\n",
     {{"b"}, kNone}},
    {"ByteOrderMarkThenBlankLine", "\xEF\xBB\xBF\ndata: a\n\n", {{"a"}, kNone}},
    // The data field and its one optional space.
    {"OneSpaceDropped", "data: a\n\n", {{"a"}, kNone}},
    {"NoSpace", "data:a\n\n", {{"a"}, kNone}},
    {"OnlyOneSpaceDropped", "data:  a \n\n", {{" a "}, kNone}},
    {"TabIsNotTheSpace", "data:\ta\n\n", {{"\ta"}, kNone}},
    {"EmptyValueAfterColon", "data:\n\n", {{""}, kNone}},
    {"EmptyValueAfterSpace", "data: \n\n", {{""}, kNone}},
    {"DataWithoutColonIsAnEmptyValue", "data\n\n", {{""}, kNone}},
    {"ValueKeepsColonsAndFieldNames", "data: data: {\"k\": 1}\n\n", {{"data: {\"k\": 1}"}, kNone}},
    // Other lines.
    {"OtherFieldsAndCommentsIgnored",
     "event: x\nid: 1\nretry: 10\n: comment\nfoo: bar\ndata: a\n\n",
     {{"a"}, kNone}},
    {"EventWithoutDataDispatchesNothing", "event: x\nid: 2\n\n: ping\n\n", {{}, kNone}},
    {"NamesThatAreNotData",
     "dat: a\n\ndatas: b\n\nData: c\n\n data: d\n\ndata : e\n\nd\n\n",
     {{}, kNone}},
    // Events of several data lines.
    {"DataLinesJoinedWithLf", "data: a\ndata: b\ndata\ndata: c\n\n", {{"a\nb\n\nc"}, kNone}},
    {"OtherLinesBetweenDataLinesKeepTheEventWhole",
     "data: a\n: ping\nid: 2\ndata: b\n\n",
     {{"a\nb"}, kNone}},
    {"EmptyFirstLineStillJoins", "data:\ndata: a\n\n", {{"\na"}, kNone}},
    // The end of the stream.
    {"EventWithoutFinalBlankLineIsOpenAtFinish", "data: a\n", {{}, "a"}},
    {"EventWithoutFinalLineEndIsOpenAtFinish", "data: a\n\ndata: b", {{"a"}, "b"}},
    {"OpenEventOfEmptyData", "data\n", {{}, ""}},
    {"OpenEventWithoutDataIsNone", "data: a\n\nevent: x\nid: 1", {{"a"}, kNone}},
    {"Empty", "", {{}, kNone}},
};

INSTANTIATE_TEST_SUITE_P(EventStreamReader, Framing, testing::ValuesIn(kCases), case_name);

TEST(EventStreamReader, CrAtTheEndOfAPieceAndLfAtTheStartOfTheNextAreOneLineEnd) {
  EXPECT_EQ(read({"data: a\r", "\ndata: b\r", "\n\r", "\n"}), (Events{{"a\nb"}, kNone}));
  EXPECT_EQ(read({"data: a\r", "\r", "\ndata: b\r", "\r"}), (Events{{"a", "b"}, kNone}));
}

TEST(EventStreamReader, DataIsHandedOverInPlaceOneRunPerLine) {
  const std::string stream = "event: delta\ndata: " + std::string(1000, 'x') + "\n\n";
  const auto* p = reinterpret_cast<const uint8_t*>(stream.data());
  const uint8_t* const end = p + stream.size();
  EventStreamReader reader;
  const EventStreamReader::Piece data = reader.read(p, end);
  ASSERT_EQ(data.kind, EventStreamReader::Kind::kData);
  EXPECT_EQ(data.data.data(), p + stream.find('x'));
  EXPECT_EQ(data.data.size(), 1000u);
  const EventStreamReader::Piece event_end = reader.read(data.rest, end);
  EXPECT_EQ(event_end.kind, EventStreamReader::Kind::kEventEnd);
  EXPECT_EQ(event_end.rest, end);
}

TEST(EventStreamReader, ResetStartsANewStreamAndACopyReadsOnAlike) {
  EventStreamReader reader;
  const std::string first = "data: a\r";
  const auto* p = reinterpret_cast<const uint8_t*>(first.data());
  reader.read(p, p + first.size());
  const EventStreamReader copy = reader;
  reader = {};
  EXPECT_FALSE(reader.finish());  // the open event is forgotten
  const std::string bom =
      "\xEF\xBB\xBF"
      "data: b\n\n";
  p = reinterpret_cast<const uint8_t*>(bom.data());
  const EventStreamReader::Piece piece = reader.read(p, p + bom.size());
  ASSERT_EQ(piece.kind, EventStreamReader::Kind::kData);
  EXPECT_EQ(std::string_view(reinterpret_cast<const char*>(piece.data.data()), piece.data.size()),
            "b");
  EventStreamReader resumed = copy;  // still just after "data: a\r": an LF is part of that end
  const std::string rest = "\n\n";
  p = reinterpret_cast<const uint8_t*>(rest.data());
  const EventStreamReader::Piece end = resumed.read(p, p + rest.size());
  EXPECT_EQ(end.kind, EventStreamReader::Kind::kEventEnd);
  EXPECT_EQ(end.rest, p + rest.size());
}

static_assert(std::is_trivially_copyable_v<EventStreamReader>);
static_assert(sizeof(EventStreamReader) == 4);

}  // namespace
}  // namespace sluice
