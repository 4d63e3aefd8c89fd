// The test support library's Cache<std::optional<int>> (support/instances.hpp).
#include "support/instances.hpp"

STAMPEDE_TEST_INSTANCES(, std::optional<int>);
