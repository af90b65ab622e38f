// File: storage/string_list.h
//
// How both storage backends store string lists (events.fields_changed,
// companies.sic_codes): as a JSON array of strings, e.g. ["a","b\"c"].
// Shared so that the SQLite and PostgreSQL columns hold the same text.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "storage/event.h"

namespace chstream::storage {

std::string EncodeStringList(const std::vector<std::string>& list);

// Decodes a JSON array of strings (any valid JSON escapes; other bytes are
// copied as they are). Returns false on malformed input.
bool DecodeStringList(std::string_view in, std::vector<std::string>* out);

// DecodeStringList, with a DataLoss error naming `what` (the column).
absl::Status DecodeListColumn(std::string_view text, std::string_view what,
                              std::vector<std::string>* out);

// Whether `e` updates the companies table (a company-profile event of the
// companies stream with a company number).
bool IsCompanyEvent(const Event& e);

}  // namespace chstream::storage
