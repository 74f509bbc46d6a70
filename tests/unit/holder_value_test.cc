#include "keys/holder_value.h"

#include <gtest/gtest.h>

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
