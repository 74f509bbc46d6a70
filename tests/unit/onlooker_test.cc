// How an onlooker (info, list, watch) reads a queue it does not take part in:
// which entries hold, which keys are locks, which name prefixes are valid.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "etcdlock/error.h"
#include "keys/holder_value.h"
#include "keys/key_layout.h"
#include "keys/names.h"
#include "queue/admission.h"

namespace etcdlock::detail {
namespace {

std::string entry(HolderValue::Side side = HolderValue::Side::none, std::int64_t limit = 0) {
  HolderValue value{"owner", "host", 1, {}, "0.1.0", ""};
  value.side = side;
  value.limit = limit;
  return encode_holder_value(value);
}

std::vector<bool> holding(const std::vector<std::string>& values) {
  std::vector<const std::string*> pointers;
  for (const auto& value : values) pointers.push_back(&value);
  return holding_entries(pointers);
}

using Mode = HolderValue::Side;

TEST(Onlooker, OnlyTheFirstEntryOfAnExclusiveQueueHolds) {
  EXPECT_EQ(holding({entry(), entry(), entry()}), (std::vector<bool>{true, false, false}));
  // etcdctl lock, Go's Mutex and election candidates store no etcdlock value.
  EXPECT_EQ(holding({"", "proposal"}), (std::vector<bool>{true, false}));
  EXPECT_EQ(holding({}), std::vector<bool>{});
}

TEST(Onlooker, TheFirstLimitEntriesOfASemaphoreHold) {
  const auto permit = entry(Mode::none, 2);
  EXPECT_EQ(holding({permit, permit, permit}), (std::vector<bool>{true, true, false}));
}

TEST(Onlooker, ReadersHoldUntilTheFirstWriter) {
  const auto reader = entry(Mode::read);
  const auto writer = entry(Mode::write);
  EXPECT_EQ(holding({reader, reader, writer, reader}), (std::vector<bool>{true, true, false, false}));
  EXPECT_EQ(holding({writer, reader, reader}), (std::vector<bool>{true, false, false}));
  EXPECT_EQ(holding({reader, writer, writer}), (std::vector<bool>{true, false, false}));
}

TEST(Onlooker, LockNamesAreWhatLiesBetweenThePrefixAndTheLeaseId) {
  EXPECT_EQ(lock_name_of("/p", "/p/jobs/694d7a1c2b3e0f11"), "jobs");
  EXPECT_EQ(lock_name_of("/p", "/p/a/b/694d"), "a/b");
  EXPECT_EQ(lock_name_of("/p", "/p/jobs"), std::nullopt) << "no lease id";
  EXPECT_EQ(lock_name_of("/p", "/p/jobs/"), std::nullopt);
  EXPECT_EQ(lock_name_of("/p", "/px/jobs/1"), std::nullopt) << "another prefix";
  EXPECT_EQ(lock_name_of("/p", "/q/jobs/1"), std::nullopt);
  EXPECT_EQ(lock_name_of("/p", std::string("/p/\0inbox/1", 11)), std::nullopt) << "a manager's inbox";
}

TEST(Onlooker, NamePrefixesMayBeEmptyOrEndWithASlash) {
  for (const char* prefix : {"", "j", "jobs", "jobs/", "a/b/"}) EXPECT_NO_THROW(validate_name_prefix(prefix)) << prefix;
  for (const char* prefix : {"/", "/jobs", "a//b", "jobs//"}) {
    try {
      validate_name_prefix(prefix);
      ADD_FAILURE() << "accepted " << prefix;
    } catch (const Error& error) {
      EXPECT_EQ(error.value(), errc::invalid_key);
      EXPECT_NE(std::string(error.what()).find(std::string("\"") + prefix + "\""), std::string::npos) << error.what();
    }
  }
}

}  // namespace
}  // namespace etcdlock::detail
