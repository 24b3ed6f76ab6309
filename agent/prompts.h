// The fixed texts of the NB-Agent's context: the system prompt (rules, the action
// format, the tools and the Notepad) and the task wording.
#ifndef NBRL_AGENT_PROMPTS_H_
#define NBRL_AGENT_PROMPTS_H_

#include <string>
#include <vector>

namespace nbrl::agent {

// A tool the agent may call from its Python cells, for the system prompt.
struct ToolDescription {
  std::string signature;  // e.g. "web_search(query: str, k: int = 5) -> list[dict]"
  std::string help;       // one or two sentences
};

// The tools of the sandbox's default set (web_search, read_page).
std::vector<ToolDescription> SearchTools();

// The system prompt: how to act (<think>...</think><code>...</code>), the Notepad
// API, submit_final_answer, and `tools` (may be empty).
std::string SystemPrompt(const std::vector<ToolDescription>& tools, int max_steps);

}  // namespace nbrl::agent

#endif  // NBRL_AGENT_PROMPTS_H_
