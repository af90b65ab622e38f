// File: client_examples/cpp/position_file.h
//
// The subscriber's resume cursor on disk: one line, a decimal chstream
// position and the store_id it belongs to ("1234 0123...cdef\n"; files
// written before store ids hold the position alone). Writes are atomic and
// durable: the text goes to a temporary file in the same directory, which is
// fsync'ed and renamed over the old file, and then the directory is fsync'ed,
// so that after a crash (process or machine) the file holds either the old or
// the new position, never a torn one.
//
// Thread-safety: the functions are thread-compatible; only one process may
// write a given position file (the temporary file's name carries the pid, so
// a second writer cannot corrupt it, but the two would overwrite each other's
// cursor).
//
//   CHS_ASSIGN_OR_RETURN(std::optional<uint64_t> after,
//                        ReadPositionFile("/var/lib/app/chstream.position"));
//   ... process events up to position 1234 ...
//   CHS_RETURN_IF_ERROR(WritePositionFile(path, 1234));
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace chstream::client_examples {

// A position and the store identity it belongs to (GetStatus store.store_id,
// the `chstream-store-id` metadata): a position is only meaningful under its
// store_id; resume with expected_store_id = store_id.
struct SavedPosition {
  uint64_t position = 0;
  std::string store_id;  // empty when unknown (an older file)
};

// The saved position, or nullopt when the file does not exist. DATA_LOSS
// when the file exists but does not hold a position (and maybe a 32-hex-digit
// store_id).
absl::StatusOr<std::optional<SavedPosition>> ReadSavedPosition(
    const std::string& path);

// Replaces the file's content, atomically and durably.
absl::Status WriteSavedPosition(const std::string& path,
                                const SavedPosition& saved);

// The stored position, or nullopt when the file does not exist.
// DATA_LOSS when the file exists but does not hold exactly one position
// (an empty or hand-edited file is an error, not "no position").
absl::StatusOr<std::optional<uint64_t>> ReadPositionFile(
    const std::string& path);

// Replaces the file's content with `position`, atomically and durably.
absl::Status WritePositionFile(const std::string& path, uint64_t position);

}  // namespace chstream::client_examples
