#include "storage/audit_entry.h"

#include <gtest/gtest.h>

namespace phivault::storage {
namespace {

AuditEntry FullEntry() {
  AuditEntry e;
  e.seq = 42;
  e.time_unix_us = 1700000000123456;
  e.prev_hash = std::string(64, 'a');
  e.request_id = "req-1";
  e.application = "ehr";
  e.user = "dr.nowak";
  e.role = "physician";
  e.action = "record.read";
  e.outcome = "success";
  e.reason = "allow:physician-treat";
  e.purpose = "TREAT";
  e.patient_bid = std::string(64, 'b');
  e.records = {"AAAAAAAAAAAAAAAAAAAAAA@1", "BBBBBBBBBBBBBBBBBBBBBA"};
  e.sealed_phi = "c2VhbGVk";
  e.break_glass = true;
  e.phi_commit = std::string(64, 'd');
  e.peer_uid = 1000;
  e.peer_pid = 4242;
  e.claimed_user = "claimed";
  e.claimed_role = "nurse";
  e.claimed_purpose = "HPAYMT";
  e.count = 3;
  e.patient_prev = 40;
  e.user_prev = 41;
  return e;
}

void ExpectEqual(const AuditEntry& a, const AuditEntry& b) {
  EXPECT_EQ(a.seq, b.seq);
  EXPECT_EQ(a.time_unix_us, b.time_unix_us);
  EXPECT_EQ(a.prev_hash, b.prev_hash);
  EXPECT_EQ(a.request_id, b.request_id);
  EXPECT_EQ(a.application, b.application);
  EXPECT_EQ(a.user, b.user);
  EXPECT_EQ(a.role, b.role);
  EXPECT_EQ(a.action, b.action);
  EXPECT_EQ(a.outcome, b.outcome);
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.purpose, b.purpose);
  EXPECT_EQ(a.patient_bid, b.patient_bid);
  EXPECT_EQ(a.records, b.records);
  EXPECT_EQ(a.sealed_phi, b.sealed_phi);
  EXPECT_EQ(a.break_glass, b.break_glass);
  EXPECT_EQ(a.phi_commit, b.phi_commit);
  EXPECT_EQ(a.peer_uid, b.peer_uid);
  EXPECT_EQ(a.peer_pid, b.peer_pid);
  EXPECT_EQ(a.claimed_user, b.claimed_user);
  EXPECT_EQ(a.claimed_role, b.claimed_role);
  EXPECT_EQ(a.claimed_purpose, b.claimed_purpose);
  EXPECT_EQ(a.count, b.count);
  EXPECT_EQ(a.patient_prev, b.patient_prev);
  EXPECT_EQ(a.user_prev, b.user_prev);
}

TEST(AuditEntryTest, RoundTripsEveryField) {
  AuditEntry e = FullEntry();
  e.user = "Zoë Łukasiewicz 医生";  // non-ASCII stays UTF-8
  auto bytes = EncodeAuditEntry(e);
  ASSERT_TRUE(bytes.ok());
  auto back = DecodeAuditEntry(*bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectEqual(*back, e);
  EXPECT_NE(bytes->find("Zoë"), std::string::npos);
}

TEST(AuditEntryTest, EncodingIsCanonicalSortedCompactJson) {
  AuditEntry e;
  e.seq = 1;
  e.time_unix_us = 5;
  e.action = "record.list";
  e.records = {"x"};
  auto bytes = EncodeAuditEntry(e);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes,
            R"({"action":"record.list","app":"","btg":false,"claimed_purpose":"",)"
            R"("claimed_role":"","claimed_user":"","count":1,"outcome":"","patient_bid":"",)"
            R"("patient_prev":0,"peer_pid":0,"peer_uid":0,"phi":"","phi_commit":"","prev":"",)"
            R"("purpose":"","reason":"","records":["x"],"request_id":"","role":"","seq":1,)"
            R"("time_us":5,"user":"","user_prev":0})");
  EXPECT_EQ(*EncodeAuditEntry(e), *bytes);
}

TEST(AuditEntryTest, InvalidUtf8IsRejectedNamingTheField) {
  AuditEntry e = FullEntry();
  e.reason = "bad \xff byte";
  auto bytes = EncodeAuditEntry(e);
  ASSERT_FALSE(bytes.ok());
  EXPECT_EQ(bytes.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bytes.status().message().find("reason"), std::string::npos);
}

TEST(AuditEntryTest, DecodeRejectsMalformedInputWithDataLoss) {
  const std::string good = *EncodeAuditEntry(FullEntry());
  auto replace = [&](std::string_view from, std::string_view to) {
    std::string s = good;
    size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return s.replace(at, from.size(), to);
  };
  struct Case {
    std::string bytes;
    std::string mentions;  // the field the message must name, if any
  };
  const std::vector<Case> cases = {
      {"", ""},
      {"[]", ""},
      {good.substr(0, good.size() - 1), ""},
      {replace("\"seq\":42", "\"seq\":\"42\""), "seq"},
      {replace("\"seq\":42", "\"seq\":-42"), "seq"},
      {replace("\"time_us\":1700000000123456", "\"time_us\":1.5"), "time_us"},
      {replace("\"btg\":true", "\"btg\":1"), "btg"},
      {replace("\"records\":[", "\"records\":[7,"), "records"},
      {replace("\"user\":", "\"usr\":"), "user"},
      {replace("{", "{\"extra\":1,"), ""},
      {replace(",", ", "), ""},  // whitespace: not canonical
  };
  for (const auto& c : cases) {
    auto e = DecodeAuditEntry(c.bytes);
    ASSERT_FALSE(e.ok()) << c.bytes;
    EXPECT_EQ(e.status().code(), StatusCode::kDataLoss) << c.bytes;
    if (!c.mentions.empty()) {
      EXPECT_NE(e.status().message().find(c.mentions), std::string::npos) << e.status().message();
    }
  }
}

}  // namespace
}  // namespace phivault::storage
