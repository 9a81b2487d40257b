// StopStringMatcher: holding back possible starts, cutting the match.

#include "engine/output/stop_string_matcher.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace openelm {
namespace {

TEST(StopStringMatcherTest, HoldsBackPossibleStartsAndCutsTheMatch) {
  const std::vector<std::string> stops = {"STOP", "xyz"};
  StopStringMatcher m(&stops);
  std::string out;
  EXPECT_FALSE(m.Push("hello S", &out));
  EXPECT_EQ(out, "hello ");
  EXPECT_EQ(m.held(), "S");
  EXPECT_FALSE(m.Push("T", &out));
  EXPECT_EQ(out, "hello ");
  EXPECT_FALSE(m.Push("x", &out));  // "STx" can no longer be STOP; "x" may be xyz
  EXPECT_EQ(out, "hello ST");
  EXPECT_TRUE(m.Push("yz and more", &out));
  EXPECT_EQ(out, "hello ST");
  EXPECT_EQ(m.matched(), "xyz");
}

TEST(StopStringMatcherTest, EarliestMatchWinsAndFlushReleasesHeldText) {
  const std::vector<std::string> stops = {"bc", "abcd"};
  StopStringMatcher m(&stops);
  std::string out;
  EXPECT_TRUE(m.Push("xabcd", &out));
  EXPECT_EQ(out, "x");
  EXPECT_EQ(m.matched(), "abcd");

  StopStringMatcher n(&stops);
  std::string out2;
  EXPECT_FALSE(n.Push("zzab", &out2));
  EXPECT_EQ(out2, "zz");
  n.Flush(&out2);
  EXPECT_EQ(out2, "zzab");
}

}  // namespace
}  // namespace openelm
