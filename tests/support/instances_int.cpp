// The test support library's Cache<int> (support/instances.hpp).
#include "support/instances.hpp"

STAMPEDE_TEST_INSTANCES(, int);
