// A test expectation: `action` throws etcdlock::Error with `code`, and its
// message names `named` (the bad value, or what failed).
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "etcdlock/error.h"

namespace etcdlock::testing {

template <class Action>
void expect_error(errc code, const std::string& named, Action action) {
  try {
    action();
    ADD_FAILURE() << "no error; expected " << to_string(code) << " naming " << named;
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), code) << error.what();
    EXPECT_NE(std::string(error.what()).find(named), std::string::npos) << error.what();
  }
}

}  // namespace etcdlock::testing
