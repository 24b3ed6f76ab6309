#include "common/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/utf8.h"
#include "glog/logging.h"

namespace nbrl::common {
namespace {

constexpr char kDefaultSource[] = "default";
constexpr char kOverrideSource[] = "override";

bool ValidKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '-';
}

// Offset of the first byte of `text` that is not well-formed UTF-8, or npos.
size_t FirstNonUtf8(absl::string_view text) {
  char32_t cp = 0;
  for (size_t i = 0; i < text.size();) {
    const size_t len = Utf8SequenceAt(text, i, &cp);
    if (len == 0) return i;
    i += len;
  }
  return absl::string_view::npos;
}

bool ValidKey(const std::string& key) {
  if (key.empty()) return false;
  for (absl::string_view part : absl::StrSplit(key, '.')) {
    if (part.empty()) return false;
    for (char c : part) {
      if (!ValidKeyChar(c)) return false;
    }
  }
  return true;
}

// Converts the text of a YAML scalar into a value of `entry`'s type; on failure
// returns a message fragment ("expected an integer, got 'abc'").
absl::StatusOr<ConfigValue> ParseScalar(const ConfigEntry& entry,
                                        const std::string& text) {
  auto type_error = [&]() {
    return absl::InvalidArgumentError(
        absl::StrCat("expected ", ConfigTypeName(entry.type), ", got '", text, "'"));
  };
  switch (entry.type) {
    case ConfigType::kBool: {
      std::string lower = text;
      std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
      if (lower == "true" || lower == "yes" || lower == "on") return ConfigValue(true);
      if (lower == "false" || lower == "no" || lower == "off")
        return ConfigValue(false);
      return type_error();
    }
    case ConfigType::kInt: {
      int64_t v;
      if (!absl::SimpleAtoi(text, &v)) return type_error();
      if ((entry.min && v < *entry.min) || (entry.max && v > *entry.max)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%d is out of range [%s, %s]", v,
            entry.min ? absl::StrCat(static_cast<int64_t>(*entry.min)) : "-inf",
            entry.max ? absl::StrCat(static_cast<int64_t>(*entry.max)) : "inf"));
      }
      return ConfigValue(v);
    }
    case ConfigType::kDouble: {
      double v;
      if (!absl::SimpleAtod(text, &v) || !std::isfinite(v)) return type_error();
      if ((entry.min && v < *entry.min) || (entry.max && v > *entry.max)) {
        return absl::InvalidArgumentError(absl::StrCat(
            text, " is out of range [", entry.min ? absl::StrCat(*entry.min) : "-inf",
            ", ", entry.max ? absl::StrCat(*entry.max) : "inf", "]"));
      }
      return ConfigValue(v);
    }
    case ConfigType::kString: {
      if (!entry.choices.empty() &&
          std::find(entry.choices.begin(), entry.choices.end(), text) ==
              entry.choices.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "'", text, "' is not one of: ", absl::StrJoin(entry.choices, ", ")));
      }
      return ConfigValue(text);
    }
    case ConfigType::kDuration: {
      absl::Duration d;
      if (!absl::ParseDuration(text, &d) || d < absl::ZeroDuration() ||
          d == absl::InfiniteDuration()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "expected a duration with a unit such as 500ms, 30s or 5m, got '", text,
            "'"));
      }
      return ConfigValue(d);
    }
    case ConfigType::kStringList:
      return type_error();
  }
  return type_error();
}

// Converts a YAML node (a value in the file or a parsed override).
absl::StatusOr<ConfigValue> ParseNode(const ConfigEntry& entry,
                                      const YAML::Node& node) {
  if (node.IsNull()) return absl::InvalidArgumentError("has no value");
  if (entry.type == ConfigType::kStringList) {
    if (!node.IsSequence()) {
      return absl::InvalidArgumentError(
          "expected a list of strings, e.g. [a, b], got a single value");
    }
    std::vector<std::string> items;
    for (const YAML::Node& item : node) {
      if (!item.IsScalar()) {
        return absl::InvalidArgumentError("expected a list of strings (plain values)");
      }
      items.push_back(item.Scalar());
    }
    return ConfigValue(std::move(items));
  }
  if (!node.IsScalar()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected ", ConfigTypeName(entry.type), ", got a ",
                     node.IsSequence() ? "list" : "mapping"));
  }
  return ParseScalar(entry, node.Scalar());
}

class Loader {
 public:
  Loader(const ConfigSchema& schema, std::string source)
      : schema_(schema), source_(std::move(source)) {}

  void Walk(const YAML::Node& map, const std::string& prefix) {
    // YAML leaves a repeated key to the reader (yaml-cpp keeps both), and either
    // choice silently drops a value the user wrote: refuse it.
    std::map<std::string, int> seen;  // key -> its line
    for (const auto& kv : map) {
      int line = kv.first.Mark().line + 1;
      if (!kv.first.IsScalar()) {
        Error(line, "keys must be plain names");
        continue;
      }
      std::string path = prefix.empty() ? kv.first.Scalar()
                                        : absl::StrCat(prefix, ".", kv.first.Scalar());
      if (auto [it, fresh] = seen.emplace(kv.first.Scalar(), line); !fresh) {
        Error(line, absl::StrCat(path, " is given twice (first on line ", it->second,
                                 "); keep one"));
        continue;
      }
      if (const ConfigEntry* entry = schema_.Find(path)) {
        absl::StatusOr<ConfigValue> value = ParseNode(*entry, kv.second);
        if (!value.ok()) {
          Error(line, absl::StrCat(path, ": ", value.status().message()));
        } else {
          values_[path] = {*std::move(value), absl::StrCat(source_, ":", line)};
        }
      } else if (schema_.IsSection(path)) {
        if (kv.second.IsMap()) {
          Walk(kv.second, path);
        } else if (!kv.second.IsNull()) {
          Error(line,
                absl::StrCat(path, " is a section; expected a mapping of its keys"));
        }
      } else {
        Error(line, absl::StrCat("unknown key ", path, " (did you mean ",
                                 schema_.Nearest(path), "?)"));
      }
    }
  }

  void Error(int line, const std::string& message) {
    errors_.push_back(line > 0 ? absl::StrCat(source_, ":", line, ": ", message)
                               : absl::StrCat(source_, ": ", message));
  }
  void Error(const std::string& message) { errors_.push_back(message); }

  const ConfigSchema& schema_;
  std::string source_;
  std::vector<std::string> errors_;
  struct Parsed {
    ConfigValue value;
    std::string source;
  };
  std::map<std::string, Parsed> values_;
};

}  // namespace

const char* ConfigTypeName(ConfigType type) {
  switch (type) {
    case ConfigType::kBool:
      return "a boolean (true/false)";
    case ConfigType::kInt:
      return "an integer";
    case ConfigType::kDouble:
      return "a number";
    case ConfigType::kString:
      return "a string";
    case ConfigType::kDuration:
      return "a duration";
    case ConfigType::kStringList:
      return "a list of strings";
  }
  return "a value";
}

namespace {
const char* ShortTypeName(ConfigType type) {
  switch (type) {
    case ConfigType::kBool:
      return "bool";
    case ConfigType::kInt:
      return "int";
    case ConfigType::kDouble:
      return "float";
    case ConfigType::kString:
      return "string";
    case ConfigType::kDuration:
      return "duration";
    case ConfigType::kStringList:
      return "list";
  }
  return "?";
}
}  // namespace

std::string FormatConfigValue(const ConfigValue& value) {
  struct Visitor {
    std::string operator()(bool v) const { return v ? "true" : "false"; }
    std::string operator()(int64_t v) const { return absl::StrCat(v); }
    std::string operator()(double v) const {
      std::string s = absl::StrFormat("%.17g", v);
      // Prefer the shortest text that reads back as the same double.
      for (int precision = 1; precision < 17; ++precision) {
        std::string shorter = absl::StrFormat("%.*g", precision, v);
        double back;
        if (absl::SimpleAtod(shorter, &back) && back == v) {
          s = shorter;
          break;
        }
      }
      if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
      return s;
    }
    std::string operator()(const std::string& v) const {
      YAML::Emitter out;
      out << YAML::DoubleQuoted << v;
      return out.c_str();
    }
    std::string operator()(absl::Duration v) const { return absl::FormatDuration(v); }
    std::string operator()(const std::vector<std::string>& v) const {
      YAML::Emitter out;
      out << YAML::Flow << YAML::BeginSeq;
      for (const auto& item : v) out << YAML::DoubleQuoted << item;
      out << YAML::EndSeq;
      return out.c_str();
    }
  };
  return std::visit(Visitor{}, value);
}

// ---- ConfigSchema ----

ConfigSchema& ConfigSchema::Add(ConfigEntry entry) {
  CHECK(ValidKey(entry.key)) << "bad config key " << entry.key;
  CHECK(!entries_.count(entry.key)) << "config key declared twice: " << entry.key;
  CHECK(!IsSection(entry.key)) << "config key " << entry.key << " is also a section";
  for (size_t dot = entry.key.find('.'); dot != std::string::npos;
       dot = entry.key.find('.', dot + 1)) {
    CHECK(!entries_.count(entry.key.substr(0, dot)))
        << "config key " << entry.key << " is under the key "
        << entry.key.substr(0, dot);
  }
  std::string key = entry.key;
  entries_.emplace(std::move(key), std::move(entry));
  return *this;
}

ConfigSchema& ConfigSchema::Bool(const std::string& key, bool def,
                                 const std::string& help) {
  return Add({key, ConfigType::kBool, def, help, {}, {}, {}});
}

ConfigSchema& ConfigSchema::Int(const std::string& key, int64_t def,
                                const std::string& help, std::optional<int64_t> min,
                                std::optional<int64_t> max) {
  std::optional<double> dmin, dmax;
  if (min) dmin = static_cast<double>(*min);
  if (max) dmax = static_cast<double>(*max);
  return Add({key, ConfigType::kInt, def, help, dmin, dmax, {}});
}

ConfigSchema& ConfigSchema::Double(const std::string& key, double def,
                                   const std::string& help, std::optional<double> min,
                                   std::optional<double> max) {
  return Add({key, ConfigType::kDouble, def, help, min, max, {}});
}

ConfigSchema& ConfigSchema::String(const std::string& key, const std::string& def,
                                   const std::string& help,
                                   std::vector<std::string> choices) {
  return Add({key, ConfigType::kString, def, help, {}, {}, std::move(choices)});
}

ConfigSchema& ConfigSchema::Duration(const std::string& key, absl::Duration def,
                                     const std::string& help) {
  return Add({key, ConfigType::kDuration, def, help, {}, {}, {}});
}

ConfigSchema& ConfigSchema::StringList(const std::string& key,
                                       std::vector<std::string> def,
                                       const std::string& help) {
  return Add({key, ConfigType::kStringList, std::move(def), help, {}, {}, {}});
}

const ConfigEntry* ConfigSchema::Find(const std::string& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second;
}

bool ConfigSchema::IsSection(const std::string& prefix) const {
  std::string with_dot = prefix + ".";
  auto it = entries_.lower_bound(with_dot);
  return it != entries_.end() && absl::StartsWith(it->first, with_dot);
}

std::string ConfigSchema::Nearest(const std::string& key) const {
  std::string best;
  size_t best_distance = std::string::npos;
  auto leaf = [](const std::string& k) {
    size_t dot = k.rfind('.');
    return dot == std::string::npos ? k : k.substr(dot + 1);
  };
  for (const auto& [name, entry] : entries_) {
    // A key put in the wrong section is a common slip: a matching leaf name counts
    // as close even when the section differs.
    size_t d =
        std::min(EditDistance(key, name), EditDistance(leaf(key), leaf(name)) + 2);
    if (d < best_distance) {
      best_distance = d;
      best = name;
    }
  }
  return best;
}

std::string ConfigSchema::Describe() const {
  std::string out;
  for (const auto& [key, entry] : entries_) {
    absl::StrAppend(&out, "  ", key, " (", ShortTypeName(entry.type), ", default ",
                    FormatConfigValue(entry.default_value), ")\n      ", entry.help);
    if (!entry.choices.empty()) {
      absl::StrAppend(&out, " One of: ", absl::StrJoin(entry.choices, ", "), ".");
    }
    absl::StrAppend(&out, "\n");
  }
  return out;
}

std::string ConfigSchema::DescribeMarkdown() const {
  std::string out = "| key | type | default | meaning |\n|---|---|---|---|\n";
  for (const auto& [key, entry] : entries_) {
    std::string help = entry.help;
    if (!entry.choices.empty()) {
      absl::StrAppend(&help, " One of: ", absl::StrJoin(entry.choices, ", "), ".");
    }
    // (Captures the type, not the structured binding: C++17 lambdas cannot.)
    auto bound = [type = entry.type](double v) {
      return type == ConfigType::kInt ? absl::StrCat(static_cast<int64_t>(v))
                                      : absl::StrCat(v);
    };
    if (entry.min && entry.max) {
      absl::StrAppend(&help, " Range: ", bound(*entry.min), " to ", bound(*entry.max),
                      ".");
    } else if (entry.min) {
      absl::StrAppend(&help, " At least ", bound(*entry.min), ".");
    } else if (entry.max) {
      absl::StrAppend(&help, " At most ", bound(*entry.max), ".");
    }
    absl::StrAppend(&out, "| `", key, "` | ", ShortTypeName(entry.type), " | `",
                    FormatConfigValue(entry.default_value), "` | ", help, " |\n");
  }
  return out;
}

// ---- Config ----

absl::StatusOr<std::pair<std::string, std::string>> ParseOverride(
    const std::string& text) {
  size_t eq = text.find('=');
  if (eq == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "override '", text, "' is not of the form key=value (e.g. metrics.port=9400)"));
  }
  std::string key = text.substr(0, eq);
  if (!ValidKey(key)) {
    return absl::InvalidArgumentError(
        absl::StrCat("override '", text, "': '", key,
                     "' is not a key (dotted names of letters, digits, '_' and '-')"));
  }
  return std::make_pair(key, text.substr(eq + 1));
}

absl::StatusOr<Config> Config::Load(const ConfigSchema& schema, const std::string& path,
                                    const std::vector<std::string>& overrides) {
  std::string text;
  if (!path.empty()) {
    absl::StatusOr<std::string> read = ReadFile(path);
    if (!read.ok()) {
      if (absl::IsNotFound(read.status())) {
        return absl::NotFoundError(
            absl::StrCat("config file ", path, " does not exist"));
      }
      return read.status();
    }
    text = *std::move(read);
  }
  return FromYaml(schema, text, path.empty() ? "<defaults>" : path, overrides);
}

absl::StatusOr<Config> Config::FromYaml(const ConfigSchema& schema,
                                        const std::string& yaml_text,
                                        const std::string& source_name,
                                        const std::vector<std::string>& overrides) {
  // YAML is UTF-8 text. yaml-cpp passes other bytes through into values, which
  // then do not survive the resolved config (ToYaml) or a protobuf string field.
  if (size_t bad = FirstNonUtf8(yaml_text); bad != absl::string_view::npos) {
    const auto line = std::count(yaml_text.begin(), yaml_text.begin() + bad, '\n');
    return absl::InvalidArgumentError(absl::StrCat(
        source_name, ":", line + 1, ": not UTF-8 text (byte ", bad, " is 0x",
        absl::Hex(static_cast<uint8_t>(yaml_text[bad]), absl::kZeroPad2), ")"));
  }
  Loader loader(schema, source_name);
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ":", e.mark.line + 1,
                                                   ":", e.mark.column + 1,
                                                   ": not valid YAML: ", e.msg));
  }
  if (root.IsMap()) {
    loader.Walk(root, "");
  } else if (!root.IsNull()) {
    loader.Error(root.Mark().line + 1,
                 "the top level must be a mapping of sections (e.g. 'learner:')");
  }

  for (const std::string& text : overrides) {
    if (FirstNonUtf8(text) != absl::string_view::npos) {
      loader.Error(
          absl::StrCat("override '", SanitizeUtf8(text), "' is not UTF-8 text"));
      continue;
    }
    absl::StatusOr<std::pair<std::string, std::string>> kv = ParseOverride(text);
    if (!kv.ok()) {
      loader.Error(std::string(kv.status().message()));
      continue;
    }
    const auto& [key, value_text] = *kv;
    const ConfigEntry* entry = schema.Find(key);
    if (entry == nullptr) {
      loader.Error(absl::StrCat("override ", text, ": unknown key ", key,
                                " (did you mean ", schema.Nearest(key), "?)"));
      continue;
    }
    absl::StatusOr<ConfigValue> value;
    if (entry->type == ConfigType::kStringList) {
      try {
        value = ParseNode(*entry, YAML::Load(value_text));
      } catch (const YAML::Exception& e) {
        value = absl::InvalidArgumentError(absl::StrCat("not valid YAML: ", e.msg));
      }
    } else {
      // Scalars are taken as written: `run.id=yes` is the string "yes".
      value = ParseScalar(*entry, value_text);
    }
    if (!value.ok()) {
      loader.Error(
          absl::StrCat("override ", text, ": ", key, ": ", value.status().message()));
      continue;
    }
    loader.values_[key] = {*std::move(value), kOverrideSource};
  }

  if (!loader.errors_.empty()) {
    return absl::InvalidArgumentError(absl::StrJoin(loader.errors_, "\n"));
  }
  std::map<std::string, Slot> values;
  for (const auto& [key, entry] : schema.entries()) {
    auto it = loader.values_.find(key);
    if (it == loader.values_.end()) {
      values[key] = {entry.default_value, kDefaultSource};
    } else {
      values[key] = {std::move(it->second.value), std::move(it->second.source)};
    }
  }
  return Config(&schema, std::move(values));
}

const Config::Slot& Config::Get(const std::string& key, ConfigType type) const {
  auto it = values_.find(key);
  CHECK(it != values_.end()) << "config key " << key << " is not declared";
  const ConfigEntry* entry = schema_->Find(key);
  CHECK(entry->type == type) << "config key " << key << " is "
                             << ConfigTypeName(entry->type) << ", read as "
                             << ConfigTypeName(type);
  return it->second;
}

bool Config::GetBool(const std::string& key) const {
  return std::get<bool>(Get(key, ConfigType::kBool).value);
}
int64_t Config::GetInt(const std::string& key) const {
  return std::get<int64_t>(Get(key, ConfigType::kInt).value);
}
double Config::GetDouble(const std::string& key) const {
  return std::get<double>(Get(key, ConfigType::kDouble).value);
}
const std::string& Config::GetString(const std::string& key) const {
  return std::get<std::string>(Get(key, ConfigType::kString).value);
}
absl::Duration Config::GetDuration(const std::string& key) const {
  return std::get<absl::Duration>(Get(key, ConfigType::kDuration).value);
}
const std::vector<std::string>& Config::GetStringList(const std::string& key) const {
  return std::get<std::vector<std::string>>(Get(key, ConfigType::kStringList).value);
}

const std::string& Config::SourceOf(const std::string& key) const {
  auto it = values_.find(key);
  CHECK(it != values_.end()) << "config key " << key << " is not declared";
  return it->second.source;
}

bool Config::IsSet(const std::string& key) const {
  return SourceOf(key) != kDefaultSource;
}

std::string Config::ToYaml() const {
  std::string out;
  std::vector<std::string> open;  // sections currently open, outermost first
  for (const auto& [key, slot] : values_) {
    std::vector<std::string> parts = absl::StrSplit(key, '.');
    size_t common = 0;
    while (common < open.size() && common + 1 < parts.size() &&
           open[common] == parts[common]) {
      ++common;
    }
    open.resize(common);
    for (size_t i = common; i + 1 < parts.size(); ++i) {
      absl::StrAppend(&out, std::string(2 * i, ' '), parts[i], ":\n");
      open.push_back(parts[i]);
    }
    absl::StrAppend(&out, std::string(2 * (parts.size() - 1), ' '), parts.back(), ": ",
                    FormatConfigValue(slot.value));
    if (slot.source != kDefaultSource) absl::StrAppend(&out, "  # ", slot.source);
    absl::StrAppend(&out, "\n");
  }
  return out;
}

absl::Status Config::WriteResolved(const std::string& path) const {
  return WriteFileAtomically(
      path, absl::StrCat("# Resolved nbrl configuration: every key with the value in "
                         "force.\n# A comment names where a value came from when it "
                         "is not the default.\n",
                         ToYaml()));
}

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace nbrl::common
