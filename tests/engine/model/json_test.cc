#include "engine/base/json.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace openelm {
namespace {

using ::openelm::testing::IsOk;
using ::openelm::testing::StatusIs;
using ::testing::HasSubstr;

absl::Status ParseError(absl::string_view text) { return ParseJson(text).status(); }

TEST(JsonTest, ParsesNestedDocument) {
  ASSERT_OK_AND_ASSIGN(JsonValue v, ParseJson(R"( {"a": [1, -2.5, true, false, null],
      "b": {"c": "d"}, "e": []} )"));
  ASSERT_TRUE(v.is_object());
  const JsonValue* a = v.Find("a");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->as_array().size(), 5u);
  EXPECT_EQ(a->as_array()[0].as_int(), 1);
  EXPECT_DOUBLE_EQ(a->as_array()[1].as_double(), -2.5);
  EXPECT_TRUE(a->as_array()[2].as_bool());
  EXPECT_FALSE(a->as_array()[3].as_bool());
  EXPECT_TRUE(a->as_array()[4].is_null());
  EXPECT_EQ(v.Find("b")->Find("c")->as_string(), "d");
  EXPECT_TRUE(v.Find("e")->as_array().empty());
  EXPECT_EQ(v.Find("missing"), nullptr);
  EXPECT_EQ(a->Find("a"), nullptr);  // not an object
}

TEST(JsonTest, IntegersAreKeptExactlyAndOnlyForIntegerLiterals) {
  ASSERT_OK_AND_ASSIGN(JsonValue big, ParseJson("9223372036854775807"));
  ASSERT_TRUE(big.is_integer());
  EXPECT_EQ(big.as_int(), INT64_MAX);
  ASSERT_OK_AND_ASSIGN(JsonValue neg, ParseJson("-9223372036854775808"));
  EXPECT_EQ(neg.as_int(), INT64_MIN);
  ASSERT_OK_AND_ASSIGN(JsonValue too_big, ParseJson("9223372036854775808"));
  EXPECT_TRUE(too_big.is_number());
  EXPECT_FALSE(too_big.is_integer());
  EXPECT_DOUBLE_EQ(too_big.as_double(), 9223372036854775808.0);
  for (const char* text : {"1.0", "1e2", "1E+2", "-0.5e-3"}) {
    ASSERT_OK_AND_ASSIGN(JsonValue v, ParseJson(text));
    EXPECT_TRUE(v.is_number()) << text;
    EXPECT_FALSE(v.is_integer()) << text;
  }
  ASSERT_OK_AND_ASSIGN(JsonValue e, ParseJson("1E+2"));
  EXPECT_DOUBLE_EQ(e.as_double(), 100.0);
  ASSERT_OK_AND_ASSIGN(JsonValue tiny, ParseJson("1e-400"));  // underflow reads as 0
  EXPECT_EQ(tiny.as_double(), 0.0);
}

TEST(JsonTest, RejectsMalformedNumbers) {
  for (const char* text : {"01", "-01", "1.", ".5", "+1", "1e", "1e+", "-", "0x10",
                           "1.e5", "Infinity", "NaN", "-Infinity"}) {
    EXPECT_THAT(ParseError(text), StatusIs(absl::StatusCode::kInvalidArgument)) << text;
  }
  EXPECT_THAT(ParseError("1e400"), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("number out of range")));
  EXPECT_THAT(ParseError("-1e400"), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("number out of range")));
}

TEST(JsonTest, DecodesEscapesAndSurrogatePairs) {
  ASSERT_OK_AND_ASSIGN(
      JsonValue v, ParseJson(R"("q\"b\\s\/n\n\t\r\b\f|\u0041\u00e9\u20ac\ud83d\ude00")"));
  EXPECT_EQ(v.as_string(), "q\"b\\s/n\n\t\r\b\f|A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
  ASSERT_OK_AND_ASSIGN(JsonValue nul, ParseJson(R"("a\u0000b")"));
  EXPECT_EQ(nul.as_string(), std::string("a\0b", 3));
}

TEST(JsonTest, RejectsBadEscapesAndLoneSurrogates) {
  EXPECT_THAT(ParseError(R"("\ud83d")"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("high surrogate not followed by a low surrogate")));
  EXPECT_THAT(ParseError(R"("\ud83d\u0041")"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("high surrogate")));
  EXPECT_THAT(ParseError(R"("\ude00")"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                  HasSubstr("lone low surrogate")));
  EXPECT_THAT(ParseError(R"("\x41")"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid escape")));
  EXPECT_THAT(ParseError(R"("\u12G4")"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                  HasSubstr("invalid hex digit")));
  EXPECT_THAT(ParseError(R"("\u12")"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseError("\"abc"), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("unterminated string")));
}

TEST(JsonTest, RejectsRawControlCharacters) {
  EXPECT_THAT(ParseError("\"a\nb\""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("byte 2: unescaped control character")));
  EXPECT_THAT(
      ParseError(std::string("\"a\0b\"", 5)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("control character")));
}

TEST(JsonTest, ValidatesUtf8) {
  ASSERT_OK_AND_ASSIGN(JsonValue ok,
                       ParseJson("\"\xE2\x82\xAC \xF0\x9F\x98\x80 \xC3\xA9\""));
  EXPECT_EQ(ok.as_string(), "\xE2\x82\xAC \xF0\x9F\x98\x80 \xC3\xA9");
  struct Case {
    std::string text;
    const char* message;
  };
  const Case cases[] = {
      {"\"\xFF\"", "invalid UTF-8 lead byte"},
      {"\"\x80\"", "invalid UTF-8 lead byte"},
      {"\"\xC0\xAF\"", "invalid UTF-8 lead byte"},  // overlong 2-byte form
      {"\"\xE0\x80\xAF\"", "overlong UTF-8 sequence"},
      {"\"\xF0\x80\x80\xAF\"", "overlong UTF-8 sequence"},
      {"\"\xED\xA0\x80\"", "UTF-8 encoded surrogate"},
      {"\"\xF4\x90\x80\x80\"", "above U+10FFFF"},
      {"\"\xE2\x82\"", "invalid UTF-8 continuation byte"},
      {"\"\xE2\x82", "truncated UTF-8 sequence"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ParseError(c.text),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.message;
  }
  // Outside strings only ASCII structure is allowed.
  EXPECT_THAT(ParseError("\xC3\xA9"), StatusIs(absl::StatusCode::kInvalidArgument,
                                               HasSubstr("unexpected character")));
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
  // Keys are compared after unescaping.
  EXPECT_THAT(ParseError(R"({"a": 1, "\u0061": 2})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate key")));
}

TEST(JsonTest, ReportsTrailingGarbageAndSyntaxErrorsWithOffsets) {
  EXPECT_THAT(ParseError("{} x"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("byte 3: unexpected trailing characters")));
  EXPECT_THAT(ParseError("[1, 2,]"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("byte 6:")));
  EXPECT_THAT(ParseError(R"({"a" 1})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("byte 5: expected ':' after object key")));
  EXPECT_THAT(ParseError(R"({"a": 1,})"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                   HasSubstr("expected a string key")));
  EXPECT_THAT(ParseError("[1 2]"), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("expected ',' or ']'")));
  EXPECT_THAT(ParseError("tru"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid literal")));
  EXPECT_THAT(ParseError(""), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("unexpected end of input")));
  EXPECT_THAT(ParseError("   "), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseError("{'a': 1}"), StatusIs(absl::StatusCode::kInvalidArgument,
                                               HasSubstr("expected a string key")));
}

TEST(JsonTest, DumpIsCompactSortedAndRoundTrips) {
  const std::string text =
      R"({"z": [1, 2.5, -0.1, 1.0, 1e300], "a": {"y": null, "b": true},)"
      R"( "s": "tab\t quote\" back\\ ctl\u0001 \u00e9"})";
  ASSERT_OK_AND_ASSIGN(JsonValue v, ParseJson(text));
  const std::string dumped = v.Dump();
  EXPECT_EQ(dumped, R"({"a":{"b":true,"y":null},"s":"tab\t quote\" back\\ ctl\u0001 )"
                    "\xC3\xA9"
                    R"(","z":[1,2.5,-0.1,1.0,1e+300]})");
  ASSERT_OK_AND_ASSIGN(JsonValue again, ParseJson(dumped));
  EXPECT_EQ(again.Dump(), dumped);
  EXPECT_TRUE(again.Find("z")->as_array()[0].is_integer());
  EXPECT_FALSE(again.Find("z")->as_array()[3].is_integer());  // 1.0 stays a float
}

TEST(JsonTest, DumpWritesShortestRoundTripDoubles) {
  for (double d : {0.1, 0.73, 1.0 / 3.0, 2.0e-8, 123456789.125, 5e-324}) {
    const std::string text = JsonValue::Number(d).Dump();
    ASSERT_OK_AND_ASSIGN(JsonValue back, ParseJson(text));
    EXPECT_EQ(back.as_double(), d) << text;
  }
  EXPECT_EQ(JsonValue::Number(0.73).Dump(), "0.73");
  EXPECT_EQ(JsonValue::Integer(-42).Dump(), "-42");
  EXPECT_EQ(JsonValue::String("\n").Dump(), "\"\\n\"");
}

}  // namespace
}  // namespace openelm
