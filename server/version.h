// File: server/version.h
#pragma once

namespace chstream::server {

inline constexpr char kVersion[] = "0.1.0";

}  // namespace chstream::server
