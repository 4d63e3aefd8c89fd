// stampede/stampede.hpp: the umbrella header of the core library (in-process backend).
//
//   #include <stampede/stampede.hpp>
//   stampede::Cache<std::string> cache({.ttl = 30s});
//   auto v = cache.get_or_compute("greeting", [] { return std::string("hello"); });
//
// The Redis backend is a separate target (stampede::redis): #include <stampede/redis/redis.hpp>.
#pragma once

#include "stampede/cache.hpp"
#include "stampede/clock.hpp"
#include "stampede/codec.hpp"
#include "stampede/errors.hpp"
#include "stampede/events.hpp"
#include "stampede/memory.hpp"
#include "stampede/options.hpp"
#include "stampede/refresher.hpp"
#include "stampede/stats.hpp"
#include "stampede/store.hpp"
#include "stampede/token_lock.hpp"
