#include "common/json_util.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/utf8.h"

namespace nbrl::common {

int JsonDepth(const nlohmann::json& value) {
  int deepest = 0;
  std::vector<std::pair<const nlohmann::json*, int>> stack = {{&value, 0}};
  while (!stack.empty()) {
    auto [v, depth] = stack.back();
    stack.pop_back();
    if (!v->is_structured()) continue;
    deepest = std::max(deepest, depth + 1);
    for (const nlohmann::json& child : *v) stack.push_back({&child, depth + 1});
  }
  return deepest;
}

std::string JsonForMessage(const nlohmann::json& value) {
  if (value.is_array()) return absl::StrCat("an array of ", value.size());
  if (value.is_object()) return absl::StrCat("an object of ", value.size(), " members");
  if (value.is_string()) {
    const std::string& s = value.get_ref<const std::string&>();
    if (s.size() > 200) {
      // Cut at a character boundary: the value came from a parser that checked
      // its UTF-8, and the cut must stay valid for dump().
      return nlohmann::json(s.substr(0, Utf8CutPoint(s, 200))).dump() + "...";
    }
  }
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace nbrl::common
