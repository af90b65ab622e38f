// File: base/testing/status_matchers.h
//
// gMock matchers for absl::Status / absl::StatusOr (Debian's abseil
// 20220623 lacks absl/status/status_matchers.h):
//
//   EXPECT_THAT(store.Open(path), IsOk());
//   EXPECT_THAT(result, StatusIs(absl::StatusCode::kOutOfRange,
//                                HasSubstr("valid range")));
//   ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path));
#pragma once

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace chstream::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = ::chstream::testing::GetStatus(arg);
  if (!s.ok()) *result_listener << "status: " << s;
  return s.ok();
}

MATCHER_P2(StatusIs, code, message_matcher,
           "has code " + ::testing::PrintToString(code)) {
  const absl::Status& s = ::chstream::testing::GetStatus(arg);
  *result_listener << "status: " << s;
  return s.code() == code &&
         ::testing::ExplainMatchResult(message_matcher,
                                       std::string(s.message()),
                                       result_listener);
}

}  // namespace chstream::testing

#define CHS_TESTING_CONCAT_INNER_(x, y) x##y
#define CHS_TESTING_CONCAT_(x, y) CHS_TESTING_CONCAT_INNER_(x, y)

#define ASSERT_OK(expr) ASSERT_THAT((expr), ::chstream::testing::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::chstream::testing::IsOk())

#define ASSERT_OK_AND_ASSIGN(lhs, rexpr)                                  \
  ASSERT_OK_AND_ASSIGN_IMPL_(CHS_TESTING_CONCAT_(chs_or_, __LINE__), lhs, \
                             rexpr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                               \
  ASSERT_TRUE(statusor.ok()) << statusor.status();       \
  lhs = std::move(statusor).value()
