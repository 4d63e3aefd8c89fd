// stampede/stampede.hpp: the umbrella header of the core library: its whole public surface.
//
//   #include <stampede/stampede.hpp>
//   stampede::Cache<std::string> cache({.ttl = 30s});
//   auto v = cache.get_or_compute("greeting", [] { return std::string("hello"); });
//
// The Redis backend is a separate target (stampede::redis): #include <stampede/redis/redis.hpp>.
#pragma once

#include "stampede/backend.hpp"
#include "stampede/cache.hpp"
#include "stampede/call.hpp"
#include "stampede/clock.hpp"
#include "stampede/codec.hpp"
#include "stampede/errors.hpp"
#include "stampede/events.hpp"
#include "stampede/lease.hpp"
#include "stampede/memory/backend.hpp"
#include "stampede/memory/store.hpp"
#include "stampede/memory/token_lock.hpp"
#include "stampede/options.hpp"
#include "stampede/stats.hpp"
#include "stampede/store.hpp"
#include "stampede/token_lock.hpp"
#include "stampede/version.hpp"
