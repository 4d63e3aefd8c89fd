// redis_test's RedisStore<T> and NearCache<T> (instances.hpp).
#include "instances.hpp"

STAMPEDE_REDIS_TEST_INSTANCES(, int, stampede::JsonCodec<int>);
STAMPEDE_REDIS_TEST_INSTANCES(, std::string, stampede::JsonCodec<std::string>);
STAMPEDE_REDIS_TEST_INSTANCES(, std::optional<int>, stampede::JsonCodec<std::optional<int>>);
template class stampede::redis::RedisStore<std::string, stampede::StringCodec>;
