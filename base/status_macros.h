// File: base/status_macros.h
//
// CHS_RETURN_IF_ERROR and CHS_ASSIGN_OR_RETURN, with the semantics of
// abseil's ABSL_RETURN_IF_ERROR / ABSL_ASSIGN_OR_RETURN (which Debian's
// abseil 20220623 predates), so a later switch is mechanical.
//
//   CHS_RETURN_IF_ERROR(db.Exec("BEGIN"));
//   CHS_ASSIGN_OR_RETURN(auto rows, db.Query(sql));
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define CHS_RETURN_IF_ERROR(expr)                  \
  do {                                             \
    ::absl::Status chs_status_ = (expr);           \
    if (!chs_status_.ok()) return chs_status_;     \
  } while (false)

#define CHS_STATUS_CONCAT_INNER_(x, y) x##y
#define CHS_STATUS_CONCAT_(x, y) CHS_STATUS_CONCAT_INNER_(x, y)

#define CHS_ASSIGN_OR_RETURN(lhs, rexpr) \
  CHS_ASSIGN_OR_RETURN_IMPL_(CHS_STATUS_CONCAT_(chs_statusor_, __LINE__), lhs, rexpr)

#define CHS_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                               \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()
