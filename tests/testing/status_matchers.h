#ifndef OPENELM_TESTS_TESTING_STATUS_MATCHERS_H_
#define OPENELM_TESTS_TESTING_STATUS_MATCHERS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

// Abseil 20220623 has no status matchers; these are ours.
namespace openelm::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = ::openelm::testing::GetStatus(arg);
  if (!s.ok()) *result_listener << "status is " << s.ToString();
  return s.ok();
}

MATCHER_P(StatusIs, code, "has code " + absl::StatusCodeToString(code)) {
  const absl::Status& s = ::openelm::testing::GetStatus(arg);
  *result_listener << "status is " << s.ToString();
  return s.code() == code;
}

MATCHER_P2(StatusIs, code, message_matcher,
           "has code " + absl::StatusCodeToString(code)) {
  const absl::Status& s = ::openelm::testing::GetStatus(arg);
  *result_listener << "status is " << s.ToString();
  return s.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, std::string(s.message()),
                                       result_listener);
}

}  // namespace openelm::testing

#define OPENELM_TEST_CONCAT_IMPL_(a, b) a##b
#define OPENELM_TEST_CONCAT_(a, b) OPENELM_TEST_CONCAT_IMPL_(a, b)
#define ASSERT_OK(expr) ASSERT_THAT((expr), ::openelm::testing::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::openelm::testing::IsOk())
#define ASSERT_OK_AND_ASSIGN(lhs, expr)                            \
  auto OPENELM_TEST_CONCAT_(sor_, __LINE__) = (expr);              \
  ASSERT_TRUE(OPENELM_TEST_CONCAT_(sor_, __LINE__).ok())           \
      << OPENELM_TEST_CONCAT_(sor_, __LINE__).status().ToString(); \
  lhs = *std::move(OPENELM_TEST_CONCAT_(sor_, __LINE__))

#endif  // OPENELM_TESTS_TESTING_STATUS_MATCHERS_H_
