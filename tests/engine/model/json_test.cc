#include "engine/base/json.h"

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace openelm {
namespace {

using ::openelm::testing::IsOk;
using ::openelm::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Optional;

absl::Status ParseError(absl::string_view text) { return ParseJson(text).status(); }

TEST(JsonTest, ParsesNestedDocument) {
  ASSERT_OK_AND_ASSIGN(nlohmann::json v, ParseJson(R"( {"a": [1, -2.5, true, false, null],
      "b": {"c": "d"}, "e": []} )"));
  ASSERT_TRUE(v.is_object());
  const nlohmann::json* a = JsonFind(v, "a");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->size(), 5u);
  EXPECT_THAT(JsonInt64((*a)[0]), Optional(1));
  EXPECT_DOUBLE_EQ((*a)[1].get<double>(), -2.5);
  EXPECT_TRUE((*a)[2].get<bool>());
  EXPECT_FALSE((*a)[3].get<bool>());
  EXPECT_TRUE((*a)[4].is_null());
  EXPECT_EQ(JsonFind(*JsonFind(v, "b"), "c")->get<std::string>(), "d");
  EXPECT_TRUE(JsonFind(v, "e")->empty());
  EXPECT_EQ(JsonFind(v, "missing"), nullptr);
  EXPECT_EQ(JsonFind(*a, "a"), nullptr);  // not an object
}

TEST(JsonTest, IntegersAreKeptExactlyAndOnlyForIntegerLiterals) {
  ASSERT_OK_AND_ASSIGN(nlohmann::json big, ParseJson("9223372036854775807"));
  EXPECT_THAT(JsonInt64(big), Optional(INT64_MAX));
  ASSERT_OK_AND_ASSIGN(nlohmann::json neg, ParseJson("-9223372036854775808"));
  EXPECT_THAT(JsonInt64(neg), Optional(INT64_MIN));
  // An integer literal beyond int64 is a number but no int64.
  ASSERT_OK_AND_ASSIGN(nlohmann::json too_big, ParseJson("9223372036854775808"));
  EXPECT_TRUE(too_big.is_number());
  EXPECT_EQ(JsonInt64(too_big), std::nullopt);
  EXPECT_DOUBLE_EQ(too_big.get<double>(), 9223372036854775808.0);
  ASSERT_OK_AND_ASSIGN(nlohmann::json huge, ParseJson("-99999999999999999999"));
  EXPECT_TRUE(huge.is_number());
  EXPECT_EQ(JsonInt64(huge), std::nullopt);
  for (const char* text : {"1.0", "1e2", "1E+2", "-0.5e-3"}) {
    ASSERT_OK_AND_ASSIGN(nlohmann::json v, ParseJson(text));
    EXPECT_TRUE(v.is_number()) << text;
    EXPECT_FALSE(v.is_number_integer()) << text;
    EXPECT_EQ(JsonInt64(v), std::nullopt) << text;
  }
  EXPECT_EQ(JsonInt64(nlohmann::json("1")), std::nullopt);
  EXPECT_EQ(JsonInt64(nlohmann::json(true)), std::nullopt);
  ASSERT_OK_AND_ASSIGN(nlohmann::json e, ParseJson("1E+2"));
  EXPECT_DOUBLE_EQ(e.get<double>(), 100.0);
  ASSERT_OK_AND_ASSIGN(nlohmann::json tiny, ParseJson("1e-400"));  // underflow reads as 0
  EXPECT_EQ(tiny.get<double>(), 0.0);
}

TEST(JsonTest, RejectsMalformedNumbers) {
  for (const char* text : {"01", "-01", "1.", ".5", "+1", "1e", "1e+", "-", "0x10",
                           "1.e5", "Infinity", "NaN", "-Infinity"}) {
    EXPECT_THAT(ParseError(text), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("JSON parse error at byte ")))
        << text;
  }
  EXPECT_THAT(ParseError("1e400"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("number overflow")));
  EXPECT_THAT(ParseError("-1e400"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("number overflow")));
}

TEST(JsonTest, DecodesEscapesAndSurrogatePairs) {
  ASSERT_OK_AND_ASSIGN(
      nlohmann::json v,
      ParseJson(R"("q\"b\\s\/n\n\t\r\b\f|\u0041\u00e9\u20ac\ud83d\ude00")"));
  EXPECT_EQ(v.get<std::string>(),
            "q\"b\\s/n\n\t\r\b\f|A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
  ASSERT_OK_AND_ASSIGN(nlohmann::json nul, ParseJson(R"("a\u0000b")"));
  EXPECT_EQ(nul.get<std::string>(), std::string("a\0b", 3));
}

TEST(JsonTest, RejectsBadEscapesAndLoneSurrogates) {
  EXPECT_THAT(ParseError(R"("\ud83d")"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("surrogate U+D800..U+DBFF must be followed by "
                                 "U+DC00..U+DFFF")));
  EXPECT_THAT(ParseError(R"("\ud83d\u0041")"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("surrogate")));
  EXPECT_THAT(ParseError(R"("\ude00")"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("surrogate U+DC00..U+DFFF must follow")));
  EXPECT_THAT(ParseError(R"("\x41")"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                HasSubstr("forbidden character after "
                                                          "backslash")));
  EXPECT_THAT(ParseError(R"("\u12G4")"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'\\u' must be followed by 4 hex digits")));
  EXPECT_THAT(ParseError(R"("\u12")"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseError("\"abc"), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("missing closing quote")));
}

TEST(JsonTest, RejectsRawControlCharacters) {
  EXPECT_THAT(ParseError("\"a\nb\""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("byte 2: syntax error while parsing value - invalid "
                                 "string: control character U+000A (LF) must be "
                                 "escaped")));
  EXPECT_THAT(
      ParseError(std::string("\"a\0b\"", 5)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("control character")));
}

TEST(JsonTest, ValidatesUtf8) {
  ASSERT_OK_AND_ASSIGN(nlohmann::json ok,
                       ParseJson("\"\xE2\x82\xAC \xF0\x9F\x98\x80 \xC3\xA9\""));
  EXPECT_EQ(ok.get<std::string>(), "\xE2\x82\xAC \xF0\x9F\x98\x80 \xC3\xA9");
  const std::string bad[] = {
      "\"\xFF\"",              // never valid
      "\"\x80\"",              // continuation byte as lead
      "\"\xC0\xAF\"",          // overlong 2-byte form
      "\"\xE0\x80\xAF\"",      // overlong 3-byte form
      "\"\xF0\x80\x80\xAF\"",  // overlong 4-byte form
      "\"\xED\xA0\x80\"",      // UTF-8 encoded surrogate
      "\"\xF4\x90\x80\x80\"",  // above U+10FFFF
      "\"\xE2\x82\"",          // truncated, then the closing quote
      "\"\xE2\x82",            // truncated at the end of input
  };
  for (const std::string& text : bad) {
    const absl::Status s = ParseError(text);
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument,
                            HasSubstr("invalid string: ill-formed UTF-8 byte")))
        << absl::CEscape(text);
    // The message quotes the input, but only as printable ASCII.
    for (const char c : s.message()) {
      EXPECT_TRUE(c >= 0x20 && c < 0x7f) << absl::CEscape(s.message());
    }
  }
  // Outside strings only ASCII structure is allowed.
  EXPECT_THAT(ParseError("\xC3\xA9"), StatusIs(absl::StatusCode::kInvalidArgument,
                                               HasSubstr("byte 0: syntax error")));
}

TEST(JsonTest, EnforcesDepthLimitOf64) {
  const auto nested = [](int depth) {
    return std::string(depth, '[') + std::string(depth, ']');
  };
  EXPECT_THAT(ParseJson(nested(64)), IsOk());
  EXPECT_THAT(ParseError(nested(65)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("byte 64: nesting deeper than 64 levels")));
  std::string objects;
  for (int i = 0; i < 65; ++i) objects += "{\"k\":";
  objects += "1" + std::string(65, '}');
  EXPECT_THAT(ParseError(objects), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("nesting deeper than 64")));
  // Far deeper input fails the same way instead of exhausting the stack.
  EXPECT_THAT(ParseError(std::string(100000, '[')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nesting")));
}

TEST(JsonTest, RejectsDuplicateKeysWithTheirOffset) {
  EXPECT_THAT(ParseError(R"({"a": 1, "b": 2, "a": 3})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("byte 17: duplicate key \"a\"")));
  // Keys are compared after unescaping; the offset is that of the key's
  // opening quote even when the key holds escaped quotes.
  EXPECT_THAT(ParseError(R"({"a": 1, "\u0061": 2})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("byte 9: duplicate key \"a\"")));
  EXPECT_THAT(ParseError(R"({"x\"\\": {}, "x\"\\": 2})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("byte 14: duplicate key \"x\"\\\"")));
  // The same key in different objects is fine.
  EXPECT_THAT(ParseJson(R"({"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]})"), IsOk());
}

TEST(JsonTest, ReportsTrailingGarbageAndSyntaxErrorsWithOffsets) {
  EXPECT_THAT(ParseError("{} x"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("byte 3: syntax error while parsing value - invalid "
                                 "literal; last read: '{} x'; expected end of input")));
  EXPECT_THAT(ParseError("{} {}"), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("expected end of input")));
  EXPECT_THAT(ParseError("[1, 2,]"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("byte 6:")));
  EXPECT_THAT(ParseError(R"({"a" 1})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("byte 5: syntax error while parsing object separator")));
  EXPECT_THAT(ParseError(R"({"a": 1,})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("byte 8: syntax error while parsing object key")));
  EXPECT_THAT(ParseError("[1 2]"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("byte 3: syntax error while parsing array")));
  EXPECT_THAT(ParseError("tru"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid literal")));
  EXPECT_THAT(ParseError(""), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("byte 0: syntax error while parsing "
                                                 "value - unexpected end of input")));
  EXPECT_THAT(ParseError("   "), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseError("{'a': 1}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("byte 1:")));
  // Comments are not JSON.
  EXPECT_THAT(ParseError("{} // x"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseError("/* x */ {}"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(JsonTest, DumpIsCompactSortedAndRoundTrips) {
  const std::string text =
      R"({"z": [1, 2.5, -0.1, 1.0, 1e300], "a": {"y": null, "b": true},)"
      R"( "s": "tab\t quote\" back\\ ctl\u0001 \u00e9"})";
  ASSERT_OK_AND_ASSIGN(nlohmann::json v, ParseJson(text));
  const std::string dumped = JsonDump(v);
  EXPECT_EQ(dumped, R"({"a":{"b":true,"y":null},"s":"tab\t quote\" back\\ ctl\u0001 )"
                    "\xC3\xA9"
                    R"(","z":[1,2.5,-0.1,1.0,1e+300]})");
  ASSERT_OK_AND_ASSIGN(nlohmann::json again, ParseJson(dumped));
  EXPECT_EQ(JsonDump(again), dumped);
  EXPECT_THAT(JsonInt64((*JsonFind(again, "z"))[0]), Optional(1));
  EXPECT_EQ(JsonInt64((*JsonFind(again, "z"))[3]), std::nullopt);  // 1.0 stays a float
}

TEST(JsonTest, DumpWritesShortestRoundTripDoubles) {
  for (double d : {0.1, 0.73, 1.0 / 3.0, 2.0e-8, 123456789.125, 5e-324}) {
    const std::string text = JsonDump(nlohmann::json(d));
    ASSERT_OK_AND_ASSIGN(nlohmann::json back, ParseJson(text));
    EXPECT_EQ(back.get<double>(), d) << text;
  }
  EXPECT_EQ(JsonDump(nlohmann::json(0.73)), "0.73");
  EXPECT_EQ(JsonDump(nlohmann::json(65.0)), "65.0");
  EXPECT_EQ(JsonDump(nlohmann::json(-42)), "-42");
  EXPECT_EQ(JsonDump(nlohmann::json("\n")), "\"\\n\"");
}

TEST(JsonTest, DumpNeverThrows) {
  // Invalid UTF-8 in a string built by our code becomes U+FFFD.
  EXPECT_EQ(JsonDump(nlohmann::json("a\xFF"
                                    "b")),
            "\"a\xEF\xBF\xBD"
            "b\"");
  EXPECT_EQ(JsonDump(nlohmann::json(std::numeric_limits<double>::infinity())), "null");
}

}  // namespace
}  // namespace openelm
