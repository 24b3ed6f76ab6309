#include "sandbox_worker/cell.h"

namespace nbrl::sandbox {

const char* TerminationName(Termination t) {
  switch (t) {
    case Termination::kCompleted:
      return "completed";
    case Termination::kTimeout:
      return "timeout";
    case Termination::kSessionKilled:
      return "session_killed";
  }
  return "unknown";
}

nlohmann::json CellResultToJson(const CellResult& r) {
  nlohmann::json j;
  j["stdout"] = r.stdout_text;
  j["stderr"] = r.stderr_text;
  j["stdout_truncated"] = r.stdout_truncated;
  j["stderr_truncated"] = r.stderr_truncated;
  j["result"] = r.result;
  j["error"] = nullptr;
  if (r.error) {
    j["error"] = {{"name", r.error->name},
                  {"message", r.error->message},
                  {"traceback", r.error->traceback}};
  }
  j["termination"] = TerminationName(r.termination);
  j["timed_out"] =
      r.termination == Termination::kTimeout ||
      (r.termination == Termination::kSessionKilled && r.kill_reason == "timeout");
  j["state_lost"] = r.state_lost;
  j["kill_reason"] = r.kill_reason;
  nlohmann::json todos = nlohmann::json::array();
  for (const TodoItem& t : r.notepad.todos) {
    todos.push_back({{"id", t.id}, {"text", t.text}, {"status", t.status}});
  }
  j["notepad"] = {
      {"todos", todos}, {"facts", r.notepad.facts}, {"draft", r.notepad.draft}};
  j["final_answer"] =
      r.final_answer ? nlohmann::json(*r.final_answer) : nlohmann::json();
  nlohmann::json vars = nlohmann::json::array();
  for (const VariableInfo& v : r.variables) {
    vars.push_back(
        {{"name", v.name}, {"type", v.type}, {"size", v.size}, {"preview", v.preview}});
  }
  j["variables"] = vars;
  nlohmann::json calls = nlohmann::json::array();
  for (const ToolCallRecord& c : r.tool_calls) {
    calls.push_back({{"tool", c.tool},
                     {"ok", c.ok},
                     {"latency_s", absl::ToDoubleSeconds(c.latency)},
                     {"error", c.error}});
  }
  j["tool_calls"] = calls;
  j["duration_s"] = absl::ToDoubleSeconds(r.duration);
  return j;
}

}  // namespace nbrl::sandbox
