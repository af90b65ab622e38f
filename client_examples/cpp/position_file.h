// File: client_examples/cpp/position_file.h
//
// The subscriber's resume cursor on disk: one decimal chstream position and
// a newline. Writes are atomic and durable: the text goes to a temporary file
// in the same directory, which is fsync'ed and renamed over the old file, and
// then the directory is fsync'ed, so that after a crash (process or machine)
// the file holds either the old or the new position, never a torn one.
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

// The stored position, or nullopt when the file does not exist.
// DATA_LOSS when the file exists but does not hold exactly one position
// (an empty or hand-edited file is an error, not "no position").
absl::StatusOr<std::optional<uint64_t>> ReadPositionFile(
    const std::string& path);

// Replaces the file's content with `position`, atomically and durably.
absl::Status WritePositionFile(const std::string& path, uint64_t position);

}  // namespace chstream::client_examples
