#include "etcd/endpoints.h"

#include <gtest/gtest.h>

#include "etcdlock/error.h"

namespace etcdlock::detail::etcd {
namespace {

TEST(Endpoints, OneMemberPerAddress) {
  using Members = std::vector<std::string>;
  EXPECT_EQ(parse_endpoints({"127.0.0.1:2379"}).members, Members{"ipv4:127.0.0.1:2379"});
  EXPECT_EQ(parse_endpoints({"http://127.0.0.1:1", "127.0.0.2:2"}).members,
            (Members{"ipv4:127.0.0.1:1", "ipv4:127.0.0.2:2"}));
  EXPECT_EQ(parse_endpoints({"[::1]:2379"}).members, Members{"ipv6:[::1]:2379"});
  EXPECT_EQ(parse_endpoints({"localhost:2379"}).members, Members{"ipv4:127.0.0.1:2379"});
  EXPECT_EQ(parse_endpoints({"http://127.0.0.1:1", "127.0.0.2:2"}).description, "http://127.0.0.1:1,127.0.0.2:2");
}

TEST(Endpoints, BadOnesNameTheValue) {
  for (const char* bad : {"", "http://", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:x", ":2379",
                          "unix:///tmp/sock", "garbage", "https://127.0.0.1:2379", "[::1:2379"}) {
    try {
      parse_endpoints({bad});
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& error) {
      EXPECT_EQ(error.value(), errc::invalid_argument) << bad;
      EXPECT_NE(std::string(error.what()).find(std::string("\"") + bad + "\""), std::string::npos) << error.what();
    }
  }
  EXPECT_THROW(parse_endpoints({}), Error);
  EXPECT_THROW(parse_endpoints({"127.0.0.1:1", "[::1]:2"}), Error);
}

}  // namespace
}  // namespace etcdlock::detail::etcd
