#pragma once

#include "driver.hpp"

namespace fault::scenarios {

extern const Scenario start;
extern const Scenario stop;
extern const Scenario restart_pass;
extern const Scenario restore;
extern const Scenario process_exit;
extern const Scenario shutdown;
extern const Scenario churn;

}  // namespace fault::scenarios
