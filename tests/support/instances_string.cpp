// The test support library's Cache<std::string> (support/instances.hpp).
#include "support/instances.hpp"

STAMPEDE_TEST_INSTANCES(, std::string);
