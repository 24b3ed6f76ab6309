// Fuzzes the configuration loader (common/config.h) with nbrl's real schema
// (common/nbrl_config.h).
//
// Input: YAML_TEXT [\0 OVERRIDE]... : the YAML file, then "key=value" overrides.
// Loading must return a Config or InvalidArgument; no exception may escape and no
// CHECK may fire. A Config that loads must survive its own resolved YAML
// (Config::ToYaml, what every process writes into its run directory): that text
// loads again to the same value for every key.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/config.h"
#include "common/nbrl_config.h"

namespace {

using nbrl::common::Config;
using nbrl::common::ConfigType;
using nbrl::common::ConfigValue;

void Fail(const std::string& what, absl::string_view input) {
  std::fprintf(stderr, "config_fuzzer: %s\n--- input ---\n%.*s\n", what.c_str(),
               static_cast<int>(input.size()), input.data());
  std::abort();
}

ConfigValue ValueOf(const Config& c, const std::string& key, ConfigType type) {
  switch (type) {
    case ConfigType::kBool:
      return c.GetBool(key);
    case ConfigType::kInt:
      return c.GetInt(key);
    case ConfigType::kDouble:
      return c.GetDouble(key);
    case ConfigType::kString:
      return c.GetString(key);
    case ConfigType::kDuration:
      return c.GetDuration(key);
    case ConfigType::kStringList:
      return c.GetStringList(key);
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts = absl::StrSplit(input, '\0');
  const std::string yaml = parts[0];
  const std::vector<std::string> overrides(parts.begin() + 1, parts.end());

  const nbrl::common::ConfigSchema& schema = nbrl::common::NbrlConfigSchema();
  absl::StatusOr<Config> config =
      Config::FromYaml(schema, yaml, "fuzz.yaml", overrides);
  if (!config.ok()) {
    if (!absl::IsInvalidArgument(config.status())) {
      Fail("unexpected status: " + config.status().ToString(), input);
    }
    return 0;
  }

  const std::string resolved = config->ToYaml();
  absl::StatusOr<Config> again =
      Config::FromYaml(schema, resolved, "resolved.yaml", /*overrides=*/{});
  if (!again.ok()) {
    Fail("the resolved YAML does not load: " + again.status().ToString() +
             "\n--- resolved ---\n" + resolved,
         input);
  }
  for (const auto& [key, entry] : schema.entries()) {
    if (ValueOf(*config, key, entry.type) != ValueOf(*again, key, entry.type)) {
      Fail("key " + key + " changed through the resolved YAML: " +
               nbrl::common::FormatConfigValue(ValueOf(*config, key, entry.type)) +
               " became " +
               nbrl::common::FormatConfigValue(ValueOf(*again, key, entry.type)),
           input);
    }
  }
  return 0;
}
