// Conformance tests of the device credentials and device CAs of store::Store (TS-0003 §8.3.2.1
// PPSK, §8.3.2.2 certificate; docs/architecture.md §5), run on SQLite ":memory:", a SQLite file
// and PostgreSQL: certificate-only and mixed devices, lookups by every credential kind, the
// all-or-nothing import, and adding, listing and removing device CAs with their audit entries.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "store/store.h"
#include "store/store_test_support.h"

namespace mte::store {
namespace {

using test_support::Backend;
using test_support::BackendTest;
using test_support::BackendName;
using test_support::HexId;
using test_support::IsError;
using test_support::MakeCertDevice;
using test_support::MakeDevice;
using test_support::Ok;
using test_support::SomeBytes;
using test_support::TempDir;

std::string Upper(std::string text) {
  for (char& c : text) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return text;
}

// A device with a Kpm, a certificate and a key pin (listed out of order on purpose).
DeviceRecord MakeMixedDevice(int n) {
  DeviceRecord device;
  device.device_id = "mixed-dev-" + std::to_string(n);
  device.credentials.push_back({CredentialKind::kSpkiSha256, HexId(n, 'e'), {}});
  device.credentials.push_back({CredentialKind::kCertSha256, HexId(n, 'd'), {}});
  device.credentials.push_back(
      {CredentialKind::kKpm, "mixed-kpm-" + std::to_string(n), SomeBytes("mixed-sealed")});
  device.claim_hash = "$argon2id$mixed" + std::to_string(n);
  device.created_at = 3000 + n;
  return device;
}

DeviceCaRecord MakeCa(const std::string& name, int n) {
  DeviceCaRecord ca;
  ca.name = name;
  ca.cert_pem = "-----BEGIN CERTIFICATE-----\nCA" + std::to_string(n) +
                "\n-----END CERTIFICATE-----\n";
  ca.cert_sha256 = HexId(n, 'f');
  ca.created_at = 4000 + n;
  return ca;
}

class DeviceCredentialStoreTest : public BackendTest {
 protected:

  bool HasDevice(const std::string& device_id) {
    auto found = store().FindDevice(device_id);
    EXPECT_TRUE(Ok(found));
    return found.has_value() && found->has_value();
  }

  std::vector<AuditEntry> AuditWith(const std::string& action) {
    auto all = store().ListAudit();
    EXPECT_TRUE(Ok(all));
    std::vector<AuditEntry> out;
    if (all.has_value()) {
      for (const auto& entry : *all) {
        if (entry.action == action) out.push_back(entry);
      }
    }
    return out;
  }

};

INSTANTIATE_TEST_SUITE_P(Backends, DeviceCredentialStoreTest, test_support::AllBackends(),
                         BackendName);

TEST(CredentialKindTest, NamesRoundTrip) {
  EXPECT_EQ(ToString(CredentialKind::kKpm), "kpm");
  EXPECT_EQ(ToString(CredentialKind::kCertSha256), "cert-sha256");
  EXPECT_EQ(ToString(CredentialKind::kSpkiSha256), "spki-sha256");
  for (const auto kind :
       {CredentialKind::kKpm, CredentialKind::kCertSha256, CredentialKind::kSpkiSha256}) {
    EXPECT_EQ(ParseCredentialKind(ToString(kind)), kind);
  }
  EXPECT_EQ(ParseCredentialKind("KPM"), std::nullopt);
  EXPECT_EQ(ParseCredentialKind(""), std::nullopt);
  EXPECT_EQ(ParseCredentialKind("cert"), std::nullopt);
}

TEST(DeviceRecordTest, FindReturnsTheFirstOfAKind) {
  const DeviceRecord device = MakeMixedDevice(1);
  ASSERT_NE(device.Find(CredentialKind::kKpm), nullptr);
  EXPECT_EQ(device.Find(CredentialKind::kKpm)->id, "mixed-kpm-1");
  ASSERT_NE(device.Find(CredentialKind::kCertSha256), nullptr);
  EXPECT_EQ(device.Find(CredentialKind::kCertSha256)->id, HexId(1, 'd'));
  EXPECT_EQ(MakeCertDevice(1).Find(CredentialKind::kKpm), nullptr);
}

TEST_P(DeviceCredentialStoreTest, CertificateOnlyDeviceRoundTrips) {
  const DeviceRecord want = MakeCertDevice(1);
  ASSERT_TRUE(Ok(store().ImportDevices({want})));
  auto found = store().FindDevice(want.device_id);
  ASSERT_TRUE(Ok(found));
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->claim_hash, want.claim_hash);
  EXPECT_EQ((*found)->created_at, want.created_at);
  ASSERT_EQ((*found)->credentials.size(), 1U);
  EXPECT_EQ((*found)->credentials[0].kind, CredentialKind::kCertSha256);
  EXPECT_EQ((*found)->credentials[0].id, want.credentials[0].id);
  EXPECT_TRUE((*found)->credentials[0].secret_sealed.empty());
  EXPECT_EQ((*found)->Find(CredentialKind::kKpm), nullptr);
}

TEST_P(DeviceCredentialStoreTest, MixedDeviceKeepsEveryCredentialInOrder) {
  const DeviceRecord want = MakeMixedDevice(1);
  ASSERT_TRUE(Ok(store().ImportDevices({want})));
  auto found = store().FindDevice(want.device_id);
  ASSERT_TRUE(Ok(found));
  ASSERT_TRUE(found->has_value());
  const auto& credentials = (*found)->credentials;
  ASSERT_EQ(credentials.size(), 3U);
  // Ordered by kind (enum order), then id.
  EXPECT_EQ(credentials[0].kind, CredentialKind::kKpm);
  EXPECT_EQ(credentials[0].id, "mixed-kpm-1");
  EXPECT_EQ(credentials[0].secret_sealed, SomeBytes("mixed-sealed"));
  EXPECT_EQ(credentials[1].kind, CredentialKind::kCertSha256);
  EXPECT_EQ(credentials[1].id, HexId(1, 'd'));
  EXPECT_EQ(credentials[2].kind, CredentialKind::kSpkiSha256);
  EXPECT_EQ(credentials[2].id, HexId(1, 'e'));
}

TEST_P(DeviceCredentialStoreTest, ListDevicesGivesEveryDeviceInOrderWithItsCredentials) {
  auto empty = store().ListDevices();
  ASSERT_TRUE(Ok(empty));
  EXPECT_TRUE(empty->empty());
  ASSERT_TRUE(Ok(store().ImportDevices({MakeMixedDevice(2), MakeCertDevice(1)})));
  ASSERT_TRUE(Ok(store().ImportDevices({MakeMixedDevice(1)})));
  auto all = store().ListDevices();
  ASSERT_TRUE(Ok(all));
  std::vector<std::string> ids;
  for (const auto& d : *all) ids.push_back(d.device_id);
  std::vector<std::string> sorted = ids;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(ids, sorted);
  ASSERT_EQ(all->size(), 3U);
  for (const auto& d : *all) {
    auto one = store().FindDevice(d.device_id);
    ASSERT_TRUE(Ok(one));
    ASSERT_TRUE(one->has_value());
    EXPECT_EQ((*one)->credentials.size(), d.credentials.size()) << d.device_id;
    EXPECT_EQ((*one)->claim_hash, d.claim_hash) << d.device_id;
  }
}

TEST_P(DeviceCredentialStoreTest, ListStakeholdersGivesEveryAccountInOrder) {
  ASSERT_TRUE(Ok(store().AddStakeholder("zed", "$argon2id$z", 5)));
  ASSERT_TRUE(Ok(store().AddStakeholder("amy", "$argon2id$a", 6)));
  auto all = store().ListStakeholders();
  ASSERT_TRUE(Ok(all));
  ASSERT_EQ(all->size(), 2U);
  EXPECT_EQ((*all)[0].name, "zed");  // by id, not by name
  EXPECT_EQ((*all)[0].created_at, 5);
  EXPECT_EQ((*all)[1].name, "amy");
  EXPECT_EQ((*all)[1].password_hash, "$argon2id$a");
}

TEST_P(DeviceCredentialStoreTest, FindsADeviceByEveryKindOfCredential) {
  ASSERT_TRUE(Ok(store().ImportDevices({MakeDevice(1), MakeCertDevice(2), MakeMixedDevice(3)})));
  struct Case {
    CredentialKind kind;
    std::string id;
    std::string device_id;
  };
  const Case cases[] = {
      {CredentialKind::kKpm, "kpm-1", "dev-1"},
      {CredentialKind::kCertSha256, HexId(2, 'c'), "cert-dev-2"},
      {CredentialKind::kKpm, "mixed-kpm-3", "mixed-dev-3"},
      {CredentialKind::kCertSha256, HexId(3, 'd'), "mixed-dev-3"},
      {CredentialKind::kSpkiSha256, HexId(3, 'e'), "mixed-dev-3"},
  };
  for (const Case& c : cases) {
    auto found = store().FindDeviceByCredential(c.kind, c.id);
    ASSERT_TRUE(Ok(found)) << c.id;
    ASSERT_TRUE(found->has_value()) << c.id;
    EXPECT_EQ((*found)->device_id, c.device_id);
  }
  // The kind is part of the key: a certificate digest is not a key pin.
  auto wrong_kind = store().FindDeviceByCredential(CredentialKind::kSpkiSha256, HexId(2, 'c'));
  ASSERT_TRUE(Ok(wrong_kind));
  EXPECT_FALSE(wrong_kind->has_value());
  auto missing = store().FindDeviceByCredential(CredentialKind::kCertSha256, HexId(404, 'c'));
  ASSERT_TRUE(Ok(missing));
  EXPECT_FALSE(missing->has_value());
  // The convenience for the PSK callback is the kKpm lookup.
  auto by_kpm = store().FindDeviceByKpmId("mixed-kpm-3");
  ASSERT_TRUE(Ok(by_kpm));
  ASSERT_TRUE(by_kpm->has_value());
  EXPECT_EQ((*by_kpm)->device_id, "mixed-dev-3");
}

TEST_P(DeviceCredentialStoreTest, CertificateLookupsIgnoreCaseKpmIdLookupsDoNot) {
  ASSERT_TRUE(Ok(store().ImportDevices({MakeDevice(1), MakeMixedDevice(2)})));
  auto cert = store().FindDeviceByCredential(CredentialKind::kCertSha256, Upper(HexId(2, 'd')));
  ASSERT_TRUE(Ok(cert));
  ASSERT_TRUE(cert->has_value());
  EXPECT_EQ((*cert)->device_id, "mixed-dev-2");
  auto spki = store().FindDeviceByCredential(CredentialKind::kSpkiSha256, Upper(HexId(2, 'e')));
  ASSERT_TRUE(Ok(spki));
  EXPECT_TRUE(spki->has_value());
  auto kpm = store().FindDeviceByKpmId("KPM-1");
  ASSERT_TRUE(Ok(kpm));
  EXPECT_FALSE(kpm->has_value());
}

TEST_P(DeviceCredentialStoreTest, DuplicateCredentialAcrossDevicesImportsNothing) {
  DeviceRecord copy = MakeCertDevice(9);
  copy.credentials[0].id = MakeCertDevice(1).credentials[0].id;
  EXPECT_TRUE(IsError(store().ImportDevices({MakeDevice(1), MakeCertDevice(1), copy}),
                      ErrorKind::kLocalUsage, Errc::kConflict,
                      "cert-sha256 credential '" + copy.credentials[0].id + "'"));
  EXPECT_FALSE(HasDevice("dev-1"));
  EXPECT_FALSE(HasDevice("cert-dev-1"));
  EXPECT_FALSE(HasDevice("cert-dev-9"));
  EXPECT_TRUE(AuditWith("device.import").empty());
}

TEST_P(DeviceCredentialStoreTest, DuplicateCredentialAgainstTheStoreImportsNothing) {
  ASSERT_TRUE(Ok(store().ImportDevices({MakeMixedDevice(1)})));
  DeviceRecord pinned = MakeCertDevice(5);
  pinned.credentials = {{CredentialKind::kSpkiSha256, HexId(1, 'e'), {}}};
  EXPECT_TRUE(IsError(store().ImportDevices({MakeDevice(2), pinned}), ErrorKind::kLocalUsage,
                      Errc::kConflict, "spki-sha256 credential '" + HexId(1, 'e') + "'"));
  EXPECT_FALSE(HasDevice("dev-2"));
  EXPECT_FALSE(HasDevice(pinned.device_id));
}

TEST_P(DeviceCredentialStoreTest, TheSameDigestUnderTwoKindsIsNoConflict) {
  DeviceRecord a = MakeCertDevice(1);
  DeviceRecord b = MakeCertDevice(2);
  b.credentials = {{CredentialKind::kSpkiSha256, a.credentials[0].id, {}}};
  EXPECT_TRUE(Ok(store().ImportDevices({a, b})));
}

TEST_P(DeviceCredentialStoreTest, MalformedCredentialsAreRefused) {
  DeviceRecord none = MakeCertDevice(1);
  none.credentials.clear();
  EXPECT_TRUE(IsError(store().ImportDevices({MakeDevice(2), none}), ErrorKind::kLocalUsage,
                      Errc::kMalformed, "no credentials"));

  DeviceRecord upper = MakeCertDevice(1);
  upper.credentials[0].id = Upper(upper.credentials[0].id);
  EXPECT_TRUE(IsError(store().ImportDevices({upper}), ErrorKind::kLocalUsage, Errc::kMalformed,
                      "64 lowercase hex"));

  DeviceRecord short_id = MakeCertDevice(1);
  short_id.credentials[0].id = "abcd";
  EXPECT_TRUE(IsError(store().ImportDevices({short_id}), ErrorKind::kLocalUsage,
                      Errc::kMalformed));

  DeviceRecord not_hex = MakeCertDevice(1);
  not_hex.credentials[0].id = std::string(63, 'a') + "g";
  EXPECT_TRUE(
      IsError(store().ImportDevices({not_hex}), ErrorKind::kLocalUsage, Errc::kMalformed));

  DeviceRecord secret_on_cert = MakeCertDevice(1);
  secret_on_cert.credentials[0].secret_sealed = SomeBytes("x");
  EXPECT_TRUE(IsError(store().ImportDevices({secret_on_cert}), ErrorKind::kLocalUsage,
                      Errc::kMalformed));

  DeviceRecord kpm_without_secret = MakeDevice(3);
  kpm_without_secret.credentials[0].secret_sealed.clear();
  EXPECT_TRUE(IsError(store().ImportDevices({kpm_without_secret}), ErrorKind::kLocalUsage,
                      Errc::kMalformed));

  EXPECT_FALSE(HasDevice("dev-2"));
  EXPECT_FALSE(HasDevice("cert-dev-1"));
}

TEST_P(DeviceCredentialStoreTest, ImportWritesItsAuditEntry) {
  ASSERT_TRUE(Ok(store().ImportDevices({MakeMixedDevice(1), MakeCertDevice(2)},
                                       {0, 50, "admin", "device.import", "2 devices", ""})));
  const auto entries = AuditWith("device.import");
  ASSERT_EQ(entries.size(), 1U);
  EXPECT_EQ(entries[0].subject, "2 devices");
}

// device CAs

TEST_P(DeviceCredentialStoreTest, DeviceCasAddListRemove) {
  DeviceCaRecord beta = MakeCa("beta", 2);
  beta.ocsp_url = "http://ocsp.maker.example/";
  beta.crl_file = "/etc/mte/beta.crl";
  beta.max_chain_depth = 0;
  beta.ocsp_fail_open = true;
  ASSERT_TRUE(Ok(store().AddDeviceCa(beta, {0, 60, "admin", "device-ca.add", "beta", ""})));
  ASSERT_TRUE(Ok(store().AddDeviceCa(MakeCa("Alpha-1.ca_x", 1))));

  auto list = store().ListDeviceCas();
  ASSERT_TRUE(Ok(list));
  ASSERT_EQ(list->size(), 2U);
  EXPECT_EQ((*list)[0].name, "Alpha-1.ca_x");  // ordered by name
  EXPECT_EQ((*list)[0].max_chain_depth, 2);
  EXPECT_FALSE((*list)[0].ocsp_fail_open);
  EXPECT_EQ((*list)[0].ocsp_url, "");
  EXPECT_EQ((*list)[0].crl_file, "");
  const DeviceCaRecord& got = (*list)[1];
  EXPECT_EQ(got.name, "beta");
  EXPECT_EQ(got.cert_pem, beta.cert_pem);
  EXPECT_EQ(got.cert_sha256, beta.cert_sha256);
  EXPECT_EQ(got.ocsp_url, beta.ocsp_url);
  EXPECT_EQ(got.crl_file, beta.crl_file);
  EXPECT_EQ(got.max_chain_depth, 0);
  EXPECT_TRUE(got.ocsp_fail_open);
  EXPECT_EQ(got.created_at, beta.created_at);

  ASSERT_TRUE(Ok(store().RemoveDeviceCa("beta", {0, 61, "admin", "device-ca.remove", "beta", ""})));
  list = store().ListDeviceCas();
  ASSERT_TRUE(Ok(list));
  ASSERT_EQ(list->size(), 1U);
  EXPECT_EQ((*list)[0].name, "Alpha-1.ca_x");

  EXPECT_TRUE(
      IsError(store().RemoveDeviceCa("beta", {0, 62, "admin", "device-ca.remove", "beta", ""}),
              ErrorKind::kLocalUsage, Errc::kNotFound, "'beta'"));
  EXPECT_EQ(AuditWith("device-ca.add").size(), 1U);
  EXPECT_EQ(AuditWith("device-ca.remove").size(), 1U);  // not for the failed removal
}

TEST_P(DeviceCredentialStoreTest, DeviceCaDuplicatesAreConflicts) {
  ASSERT_TRUE(Ok(store().AddDeviceCa(MakeCa("maker", 1))));
  // The same name with another certificate.
  EXPECT_TRUE(IsError(store().AddDeviceCa(MakeCa("maker", 2),
                                          {0, 70, "admin", "device-ca.add", "maker", ""}),
                      ErrorKind::kLocalUsage, Errc::kConflict, "name exists"));
  // The same certificate under another name.
  EXPECT_TRUE(IsError(store().AddDeviceCa(MakeCa("other", 1)), ErrorKind::kLocalUsage,
                      Errc::kConflict, "'maker'"));
  auto list = store().ListDeviceCas();
  ASSERT_TRUE(Ok(list));
  EXPECT_EQ(list->size(), 1U);
  EXPECT_TRUE(AuditWith("device-ca.add").empty());
  // A removed CA's name and certificate can be added again.
  ASSERT_TRUE(Ok(store().RemoveDeviceCa("maker")));
  EXPECT_TRUE(Ok(store().AddDeviceCa(MakeCa("other", 1))));
}

TEST_P(DeviceCredentialStoreTest, MalformedDeviceCasAreRefused) {
  for (const std::string& name : {std::string(), std::string(65, 'a'), std::string("has space"),
                                 std::string("slash/name"), std::string("ümlaut")}) {
    EXPECT_TRUE(IsError(store().AddDeviceCa(MakeCa(name, 1)), ErrorKind::kLocalUsage,
                        Errc::kMalformed))
        << name;
  }
  EXPECT_TRUE(Ok(store().AddDeviceCa(MakeCa(std::string(64, 'a'), 1))));

  DeviceCaRecord depth = MakeCa("depth", 2);
  depth.max_chain_depth = 9;
  EXPECT_TRUE(IsError(store().AddDeviceCa(depth), ErrorKind::kLocalUsage, Errc::kMalformed));
  depth.max_chain_depth = -1;
  EXPECT_TRUE(IsError(store().AddDeviceCa(depth), ErrorKind::kLocalUsage, Errc::kMalformed));
  depth.max_chain_depth = 8;
  EXPECT_TRUE(Ok(store().AddDeviceCa(depth)));

  DeviceCaRecord relative = MakeCa("relative", 3);
  relative.crl_file = "ca.crl";
  EXPECT_TRUE(IsError(store().AddDeviceCa(relative), ErrorKind::kLocalUsage, Errc::kMalformed,
                      "absolute"));
  DeviceCaRecord digest = MakeCa("digest", 4);
  digest.cert_sha256 = Upper(digest.cert_sha256);
  EXPECT_TRUE(IsError(store().AddDeviceCa(digest), ErrorKind::kLocalUsage, Errc::kMalformed));
  DeviceCaRecord empty = MakeCa("empty", 5);
  empty.cert_pem.clear();
  EXPECT_TRUE(IsError(store().AddDeviceCa(empty), ErrorKind::kLocalUsage, Errc::kMalformed));

  auto list = store().ListDeviceCas();
  ASSERT_TRUE(Ok(list));
  EXPECT_EQ(list->size(), 2U);
}

}  // namespace
}  // namespace mte::store
