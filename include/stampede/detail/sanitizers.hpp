// stampede/detail/sanitizers.hpp: STAMPEDE_TSAN, defined when ThreadSanitizer instruments the build.
//
// Code whose correctness rests on fences (which TSan does not model) takes its all-atomic path
// under TSan, and tests that TSan cannot run (threads after a multi-threaded fork()) skip.
//
//   #ifdef STAMPEDE_TSAN
//   GTEST_SKIP() << "TSan cannot start threads in a fork()ed child";
//   #endif
#pragma once

#if defined(__SANITIZE_THREAD__)
#define STAMPEDE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STAMPEDE_TSAN 1
#endif
#endif
