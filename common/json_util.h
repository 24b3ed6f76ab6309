// Safe handling of JSON values read from files (model configs, data sets, search
// corpora, run directories). nlohmann::json parses without recursion, but dump()
// recurses once per level: a small file of deeply nested brackets overflows the
// stack when such a value is dumped, into an error message or into data. These
// helpers never recurse.
#ifndef NBRL_COMMON_JSON_UTIL_H_
#define NBRL_COMMON_JSON_UTIL_H_

#include <string>

#include "nlohmann/json.hpp"

namespace nbrl::common {

// Nesting depth of `value`: 0 for a scalar, 1 for an array or object of scalars,
// and so on. Iterative.
int JsonDepth(const nlohmann::json& value);

// `value` as it may appear in an error message: a scalar as JSON (a string cut to
// 200 bytes), an array or object by its size only.
std::string JsonForMessage(const nlohmann::json& value);

// The deepest nesting nbrl dumps back out (metadata kept with examples and the
// like); deeper values are refused by their readers.
inline constexpr int kMaxJsonDumpDepth = 64;

}  // namespace nbrl::common

#endif  // NBRL_COMMON_JSON_UTIL_H_
