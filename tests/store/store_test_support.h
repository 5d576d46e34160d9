// Shared by the store conformance suites (sqlite_store_test.cc, flow_b_store_test.cc,
// device_credentials_store_test.cc): the backends they run on, a fixture with a fresh store on
// each, and the records they build. The PostgreSQL instances are named ".../Postgres"; they need
// the server of tests/testlib/with_postgres.sh and fail without it.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "store/postgres_test_support.h"
#include "store/store.h"
#include "testlib/result_assertions.h"
#include "testlib/temp_dir.h"

namespace mte::store::test_support {

using testlib::IsError;
using testlib::Ok;
using testlib::TempDir;

// SQLite ":memory:", a SQLite database file in a temporary directory, or a fresh PostgreSQL
// database on the server of tests/testlib/with_postgres.sh (postgres_test_support.h).
enum class Backend { kMemory, kFile, kPostgres };

inline std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
  switch (info.param) {
    case Backend::kMemory:
      return "Memory";
    case Backend::kFile:
      return "File";
    case Backend::kPostgres:
      return "Postgres";
  }
  return "Unknown";
}

// Every backend, for INSTANTIATE_TEST_SUITE_P.
inline auto AllBackends() {
  return ::testing::Values(Backend::kMemory, Backend::kFile, Backend::kPostgres);
}

// A fresh store on the test's backend; suites derive from it (and call its SetUp first).
class BackendTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    switch (GetParam()) {
      case Backend::kMemory:
        location_ = ":memory:";
        break;
      case Backend::kFile:
        ASSERT_TRUE(dir_.ok());
        location_ = dir_.File("mte.db");
        break;
      case Backend::kPostgres:
        postgres_ = std::make_unique<PostgresTestDatabase>();
        ASSERT_TRUE(postgres_->ok()) << postgres_->error();
        location_ = postgres_->uri();
        break;
    }
    auto opened = OpenStore(location_);
    ASSERT_TRUE(Ok(opened));
    store_ = std::move(*opened);
  }

  Store& store() { return *store_; }

  // Whether a second store can open the same database (as a second process would).
  bool Shareable() const { return GetParam() != Backend::kMemory; }

  // A second store on the test's database, or nullptr (with a test failure).
  std::unique_ptr<Store> OpenAnother() {
    auto opened = OpenStore(location_);
    EXPECT_TRUE(Ok(opened));
    return opened.has_value() ? std::move(*opened) : nullptr;
  }

  TempDir dir_;
  std::unique_ptr<PostgresTestDatabase> postgres_;  // before store_: outlives it
  std::string location_;  // a SQLite path or a PostgreSQL URI, for OpenStore
  std::unique_ptr<Store> store_;
};

inline Bytes SomeBytes(std::string_view seed) {
  Bytes out(AsBytes(seed).begin(), AsBytes(seed).end());
  out.push_back(0x00);  // an embedded NUL must survive the round trip
  out.push_back(0xff);
  return out;
}

inline DeviceRecord MakeDevice(int n) {
  DeviceRecord device;
  device.device_id = "dev-" + std::to_string(n);
  device.credentials.push_back({CredentialKind::kKpm, "kpm-" + std::to_string(n),
                                SomeBytes("kpm-sealed-" + std::to_string(n))});
  device.claim_hash = "$argon2id$v=19$m=65536,t=3,p=1$claim" + std::to_string(n);
  device.created_at = 1000 + n;
  return device;
}

// A lowercase hex SHA-256 look-alike, distinct per seed (the store does not hash anything).
inline std::string HexId(int n, char fill = 'a') {
  std::string hex(64, fill);
  const std::string tail = std::to_string(n);
  hex.replace(hex.size() - tail.size(), tail.size(), tail);
  return hex;
}

// A device known only by its certificate (TS-0003 §8.3.2.2).
inline DeviceRecord MakeCertDevice(int n) {
  DeviceRecord device;
  device.device_id = "cert-dev-" + std::to_string(n);
  device.credentials.push_back({CredentialKind::kCertSha256, HexId(n, 'c'), {}});
  device.claim_hash = "$argon2id$v=19$m=65536,t=3,p=1$cclaim" + std::to_string(n);
  device.created_at = 2000 + n;
  return device;
}

inline MafCredential MakeCredential(std::string km_id, int64_t enrolee_id, int64_t generation) {
  MafCredential credential;
  credential.km_id = std::move(km_id);
  credential.km_sealed = SomeBytes(credential.km_id);
  credential.enrolee_id = enrolee_id;
  credential.generation = generation;
  credential.expires_at = 9000 + generation;
  credential.received_at = 5000 + generation;
  return credential;
}

}  // namespace mte::store::test_support
