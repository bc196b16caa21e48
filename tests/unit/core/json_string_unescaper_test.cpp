// Specification of the second JSON-string unescape applied to tool-call arguments: what it
// decodes, what it leaves alone, and that the output does not depend on how the text is cut:
// every case is fed whole, split in two at every byte, and byte by byte.
#include "sluice/json_string_unescaper.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {
namespace {

std::string decode(std::string_view text, const std::vector<std::size_t>& cuts) {
  JsonStringUnescaper unescaper;
  std::string out;
  auto sink = [&](const uint8_t* bytes, std::size_t size) {
    EXPECT_GT(size, 0u);
    out.append(reinterpret_cast<const char*>(bytes), size);
  };
  std::size_t from = 0;
  for (std::size_t cut : cuts) {
    unescaper.feed(reinterpret_cast<const uint8_t*>(text.data()) + from, cut - from, sink);
    from = cut;
  }
  unescaper.feed(reinterpret_cast<const uint8_t*>(text.data()) + from, text.size() - from, sink);
  unescaper.finish(sink);
  return out;
}

void check(std::string_view text, std::string_view expected) {
  SCOPED_TRACE(std::string(text));
  EXPECT_EQ(decode(text, {}), expected);
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    EXPECT_EQ(decode(text, {cut}), expected) << "cut at " << cut;
  }
  std::vector<std::size_t> every;
  for (std::size_t i = 1; i < text.size(); ++i) every.push_back(i);
  EXPECT_EQ(decode(text, every), expected) << "byte by byte";
}

TEST(JsonStringUnescaper, DecodesUnicodeEscapes) {
  check(R"({"city": "no \u0065thical"})", R"({"city": "no ethical"})");
  check(R"(\u00e9\u20AC\u0000.)", std::string("\xc3\xa9\xe2\x82\xac\0.", 7));
}

TEST(JsonStringUnescaper, CombinesSurrogatePairs) {
  check(R"(\ud83d\ude00)", "\xf0\x9f\x98\x80");
  check(R"(\uD83D\uDE00!)", "\xf0\x9f\x98\x80!");
}

TEST(JsonStringUnescaper, ReplacesLoneSurrogatesWithFffd) {
  check(R"(\ud83dx)", "\xef\xbf\xbdx");
  check(R"(\ude00)", "\xef\xbf\xbd");
  check(R"(\ud83d)", "\xef\xbf\xbd");
  check(R"(\ud83d\u0041)",
        "\xef\xbf\xbd"
        "A");
  check(R"(\ud83d\ud83d\ude00)", "\xef\xbf\xbd\xf0\x9f\x98\x80");
  check(R"(\ud83d\n)", "\xef\xbf\xbd\n");
  check(R"(\ud83d\u12)", "\xef\xbf\xbd\\u12");
}

TEST(JsonStringUnescaper, DecodesShortEscapes) {
  check(R"(\"\\\/\b\f\n\r\t)", "\"\\/\b\f\n\r\t");
  check(R"(a\\u0065)", R"(a\u0065)");  // an escaped backslash is one character: read once
}

TEST(JsonStringUnescaper, LeavesWhatIsNotAnEscapeAsItIs) {
  check(R"(\x41)", R"(\x41)");
  check(R"(\u12G4)", R"(\u12G4)");
  check(R"(\u12\u0065)", R"(\u12e)");
  check(R"(\)", R"(\)");
  check(R"(\u)", R"(\u)");
  check(R"(\u004)", R"(\u004)");
  check("plain text, caf\xc3\xa9", "plain text, caf\xc3\xa9");
  check("", "");
}

TEST(JsonStringUnescaper, KeepsItsStateWithinTheStatedBudget) {
  static_assert(sizeof(JsonStringUnescaper) <= JsonStringUnescaper::kStateBytes);
  static_assert(JsonStringUnescaper::kStateBytes <= 12);
}

}  // namespace
}  // namespace sluice
