// sanitizer.h: whether a sanitizer instruments this build, for the tests
// whose checks of time are loosened or skipped under one. GCC defines
// __SANITIZE_ADDRESS__ and __SANITIZE_THREAD__; Clang (which builds
// scripts/sanitize's AddressSanitizer tree) tells only through __has_feature.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define ETCDLOCK_TEST_THREAD_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ETCDLOCK_TEST_THREAD_SANITIZER 1
#endif
#endif
#ifndef ETCDLOCK_TEST_THREAD_SANITIZER
#define ETCDLOCK_TEST_THREAD_SANITIZER 0
#endif

#if defined(__SANITIZE_ADDRESS__)
#define ETCDLOCK_TEST_ADDRESS_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ETCDLOCK_TEST_ADDRESS_SANITIZER 1
#endif
#endif
#ifndef ETCDLOCK_TEST_ADDRESS_SANITIZER
#define ETCDLOCK_TEST_ADDRESS_SANITIZER 0
#endif

#define ETCDLOCK_TEST_SANITIZED (ETCDLOCK_TEST_THREAD_SANITIZER || ETCDLOCK_TEST_ADDRESS_SANITIZER)
