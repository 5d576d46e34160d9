// One schema migration as embedded in the binary (docs/architecture.md §5): the files
// src/store/migrations/NNNN_<name>.sql (SQLite) and src/store/migrations/postgresql/NNNN_<name>.sql
// (PostgreSQL), turned into arrays of these by src/store/CMakeLists.txt at configure time.
#pragma once

#include <cstdint>
#include <string_view>

namespace mte::store::internal {

struct Migration {
  int64_t version;        // 1, 2, 3, ... with no gaps
  std::string_view name;  // file name, e.g. "0001_init.sql"
  const char* sql;        // one or more statements, without BEGIN/COMMIT
};

}  // namespace mte::store::internal
