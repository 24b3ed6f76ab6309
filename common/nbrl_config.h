// The schema of nbrl's configuration: every key any nbrl process accepts.
//
// One YAML file configures a whole run; every binary reads the same file and takes
// the sections it needs, so all keys are declared here, grouped by section. A
// binary turns its sections into its modules' Options structs; modules never see
// the Config. docs/configuration.md is generated from this (`nbrl config
// --markdown`), and a test keeps the two in step.
#ifndef NBRL_COMMON_NBRL_CONFIG_H_
#define NBRL_COMMON_NBRL_CONFIG_H_

#include "common/config.h"

namespace nbrl::common {

// The process-wide schema, built on first use.
const ConfigSchema& NbrlConfigSchema();

}  // namespace nbrl::common

#endif  // NBRL_COMMON_NBRL_CONFIG_H_
