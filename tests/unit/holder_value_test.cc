#include "keys/holder_value.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace etcdlock::detail {
namespace {

TEST(HolderValue, RoundTrip) {
  const auto now = std::chrono::floor<std::chrono::milliseconds>(std::chrono::system_clock::now());
  const std::string inbox("/p/\0inbox/1f", 11);
  const HolderValue value{"svc-a", "host1", 4242, now, "0.1.0", inbox};
  const auto text = encode_holder_value(value);
  const auto decoded = decode_holder_value(text);
  ASSERT_TRUE(decoded) << text;
  EXPECT_EQ(decoded->owner, "svc-a");
  EXPECT_EQ(decoded->hostname, "host1");
  EXPECT_EQ(decoded->pid, 4242);
  EXPECT_EQ(decoded->created_at, now);
  EXPECT_EQ(decoded->version, "0.1.0");
  EXPECT_EQ(decoded->inbox, inbox);
}

// The document that earlier versions built and dumped with nlohmann::json;
// the hand-written encoder must write the same text.
std::string as_json_document(const HolderValue& value, const std::string& created_at) {
  nlohmann::json document = {{"owner", value.owner},
                             {"hostname", value.hostname},
                             {"pid", value.pid},
                             {"created_at", created_at},
                             {"version", value.version}};
  if (!value.inbox.empty()) document["inbox"] = value.inbox;
  if (value.side != HolderValue::Side::none)
    document["mode"] = value.side == HolderValue::Side::read ? "read" : "write";
  if (value.limit > 0) document["limit"] = value.limit;
  if (!value.names.empty()) document["names"] = value.names;
  return document.dump();
}

TEST(HolderValue, TextIsWhatAJsonDocumentWrites) {
  using namespace std::chrono;
  // 2026-03-04T05:06:07.089Z: every field of the time is zero-padded.
  const system_clock::time_point at = sys_days{year{2026} / 3 / 4} + 5h + 6min + 7s + 89ms;
  const std::string created = "2026-03-04T05:06:07.089Z";
  std::vector<HolderValue> values;
  values.push_back({"svc-a", "host1", 4242, at, "0.1.0", ""});
  values.push_back(
      {"quote\" and \\ slash/", "h\b\f\n\r\t", 1, at, "v", std::string("/p/\0inbox/1f", 11), HolderValue::Side::read});
  values.push_back(
      {"\x01\x1f\x7f", "名前", 99999999, at, "0.1.0", "", HolderValue::Side::write, 7, {"a", "名/b", "c\"d"}});
  values.push_back({"", "", 0, at, "", "", HolderValue::Side::none, 1, {"only"}});
  for (const auto& value : values) {
    EXPECT_EQ(encode_holder_value(value), as_json_document(value, created)) << value.owner;
    const auto decoded = decode_holder_value(encode_holder_value(value));
    ASSERT_TRUE(decoded);
    EXPECT_EQ(decoded->owner, value.owner);
    EXPECT_EQ(decoded->hostname, value.hostname);
    EXPECT_EQ(decoded->inbox, value.inbox);
    EXPECT_EQ(decoded->side, value.side);
    EXPECT_EQ(decoded->limit, value.limit);
    EXPECT_EQ(decoded->names, value.names);
    EXPECT_EQ(decoded->created_at, at);
  }
}

TEST(HolderValue, BytesThatAreNotUtf8StillMakeValidJson) {
  // A host name is not checked; a JSON document refused to write one that is
  // not UTF-8 (it threw from every acquisition).
  const HolderValue value{"svc", "h\xff\xfeost", 1, std::chrono::system_clock::now(), "v", ""};
  const auto text = encode_holder_value(value);
  ASSERT_TRUE(nlohmann::json::accept(text)) << text;
  const auto decoded = decode_holder_value(text);
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->hostname, "h\uFFFD\uFFFDost");
  EXPECT_EQ(decoded->owner, "svc");
}

TEST(HolderValue, ForeignValuesAreNotOurs) {
  EXPECT_FALSE(decode_holder_value(""));  // etcdctl lock and Go's Mutex store nothing
  EXPECT_FALSE(decode_holder_value("not json"));
  EXPECT_FALSE(decode_holder_value("[1,2]"));
  EXPECT_FALSE(decode_holder_value(R"({"owner": 5})"));
  EXPECT_FALSE(decode_holder_value(std::string(1 << 20, '{')));
}

TEST(HolderValue, DefaultOwnerIsHostAndPid) { EXPECT_NE(default_owner().find(':'), std::string::npos); }

}  // namespace
}  // namespace etcdlock::detail
