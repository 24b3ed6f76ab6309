// Typed, validated, frozen configuration: one YAML file plus `a.b.c=value`
// overrides, checked against a schema that declares every key with its type,
// default, limits and meaning.
//
//   ConfigSchema schema;
//   schema.Int("learner.batch_size", 64, "Prompts per step.", /*min=*/1);
//   ASSIGN_OR_RETURN(Config config,
//                    Config::Load(schema, "run.yaml", {"learner.batch_size=8"}));
//   int64_t batch = config.GetInt("learner.batch_size");
//
// Errors name the place and the key: an unknown key names the nearest declared one
// (`run.yaml:3: unknown key learner.batchsize (did you mean learner.batch_size?)`),
// a type error names file, line, key and the expected type. All problems of a file
// are reported together. Modules never see a Config: binaries turn it into each
// module's Options struct.
//
// Thread safety: a ConfigSchema is built once, then read only. A Config is
// immutable after Load and safe to read from any thread.
#ifndef NBRL_COMMON_CONFIG_H_
#define NBRL_COMMON_CONFIG_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace nbrl::common {

enum class ConfigType { kBool, kInt, kDouble, kString, kDuration, kStringList };

// Name of a type as used in error messages ("an integer", ...).
const char* ConfigTypeName(ConfigType type);

using ConfigValue = std::variant<bool, int64_t, double, std::string, absl::Duration,
                                 std::vector<std::string>>;

// One declared key.
struct ConfigEntry {
  std::string key;  // dotted path, e.g. "metrics.port"
  ConfigType type = ConfigType::kString;
  ConfigValue default_value;
  std::string help;
  // Inclusive limits for kInt and kDouble (as double), when set.
  std::optional<double> min;
  std::optional<double> max;
  // Allowed values for kString; empty means any string.
  std::vector<std::string> choices;
};

// The set of keys a program accepts. Declaring a key twice, or a key that is also a
// section of another key, is a programming error (CHECK).
class ConfigSchema {
 public:
  ConfigSchema& Bool(const std::string& key, bool def, const std::string& help);
  ConfigSchema& Int(const std::string& key, int64_t def, const std::string& help,
                    std::optional<int64_t> min = std::nullopt,
                    std::optional<int64_t> max = std::nullopt);
  ConfigSchema& Double(const std::string& key, double def, const std::string& help,
                       std::optional<double> min = std::nullopt,
                       std::optional<double> max = std::nullopt);
  ConfigSchema& String(const std::string& key, const std::string& def,
                       const std::string& help, std::vector<std::string> choices = {});
  ConfigSchema& Duration(const std::string& key, absl::Duration def,
                         const std::string& help);
  ConfigSchema& StringList(const std::string& key, std::vector<std::string> def,
                           const std::string& help);

  // nullptr when `key` is not declared.
  const ConfigEntry* Find(const std::string& key) const;
  // True when `prefix` is a section ("learner" for "learner.batch_size").
  bool IsSection(const std::string& prefix) const;
  // The declared key closest to `key` by edit distance (for "did you mean").
  std::string Nearest(const std::string& key) const;
  // Declared entries in key order.
  const std::map<std::string, ConfigEntry>& entries() const { return entries_; }

  // Human-readable reference of every key (for --help): key, type, default, help.
  std::string Describe() const;
  // The same as a Markdown table (docs/configuration.md).
  std::string DescribeMarkdown() const;

 private:
  ConfigSchema& Add(ConfigEntry entry);

  std::map<std::string, ConfigEntry> entries_;
};

// Formats a value the way it would be written in YAML.
std::string FormatConfigValue(const ConfigValue& value);

class Config {
 public:
  // Loads `path` (empty: defaults only) and applies `overrides` ("a.b.c=value", the
  // value written as in YAML) in order. Returns InvalidArgument naming every
  // problem, NotFound when the file does not exist.
  static absl::StatusOr<Config> Load(const ConfigSchema& schema,
                                     const std::string& path,
                                     const std::vector<std::string>& overrides);
  // As Load, from YAML text; `source_name` stands for the file in messages.
  static absl::StatusOr<Config> FromYaml(const ConfigSchema& schema,
                                         const std::string& yaml_text,
                                         const std::string& source_name,
                                         const std::vector<std::string>& overrides);

  // Typed getters. Asking for an undeclared key or with the wrong type is a
  // programming error (CHECK), never an input error.
  bool GetBool(const std::string& key) const;
  int64_t GetInt(const std::string& key) const;
  double GetDouble(const std::string& key) const;
  const std::string& GetString(const std::string& key) const;
  absl::Duration GetDuration(const std::string& key) const;
  const std::vector<std::string>& GetStringList(const std::string& key) const;

  // Where the value of `key` came from: "default", "FILE:LINE" or "override".
  const std::string& SourceOf(const std::string& key) const;
  // True when the value was given in the file or an override.
  bool IsSet(const std::string& key) const;

  // Every declared key with its resolved value, as nested YAML; each value is
  // followed by a comment naming its source when it is not the default.
  std::string ToYaml() const;
  // Writes ToYaml() atomically to `path`, creating parent directories.
  absl::Status WriteResolved(const std::string& path) const;

 private:
  struct Slot {
    ConfigValue value;
    std::string source;  // "default", "file:line", "override"
  };
  Config(const ConfigSchema* schema, std::map<std::string, Slot> values)
      : schema_(schema), values_(std::move(values)) {}
  const Slot& Get(const std::string& key, ConfigType type) const;

  const ConfigSchema* schema_;  // not owned; must outlive the Config
  std::map<std::string, Slot> values_;
};

// Splits "a.b.c=value" into key and value text. InvalidArgument when malformed.
absl::StatusOr<std::pair<std::string, std::string>> ParseOverride(
    const std::string& text);

// Levenshtein distance, for suggestions.
size_t EditDistance(const std::string& a, const std::string& b);

}  // namespace nbrl::common

#endif  // NBRL_COMMON_CONFIG_H_
