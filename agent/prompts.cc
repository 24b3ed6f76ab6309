#include "agent/prompts.h"

#include "absl/strings/str_cat.h"

namespace nbrl::agent {

std::vector<ToolDescription> SearchTools() {
  return {
      {"web_search(query: str, k: int = 5) -> list[dict]",
       "Searches the document collection; returns up to k hits as dicts with 'id', "
       "'title' and 'snippet'."},
      {"read_page(id: str) -> str",
       "Returns the text of the document with this id (from a search hit)."},
  };
}

std::string SystemPrompt(const std::vector<ToolDescription>& tools, int max_steps) {
  std::string out =
      "You solve tasks by writing Python in a notebook. At each step write your "
      "reasoning and then one code cell, exactly in this form:\n"
      "<think>what you know, what you need, what this cell will do</think>\n"
      "<code>\npython code\n</code>\n"
      "The cell runs in a persistent Python session (variables stay between cells) "
      "and you see its output in <output>...</output>. Print what you need to see. "
      "The question is also in the variable `question`.\n\n";
  if (!tools.empty()) {
    absl::StrAppend(&out, "Functions available in the session:\n");
    for (const ToolDescription& t : tools) {
      absl::StrAppend(&out, "- ", t.signature, ": ", t.help, "\n");
    }
    absl::StrAppend(&out, "\n");
  }
  absl::StrAppend(
      &out,
      "Keep notes with the `notepad` object; it is shown to you after every step:\n"
      "- notepad.add_todo(text), notepad.update_todo(id, status) with status "
      "'pending', 'in_progress', 'done' or 'dropped'\n"
      "- notepad.add_facts(fact or list of facts)\n"
      "- notepad.write_draft(text): your current draft answer\n\n"
      "When you know the answer, call submit_final_answer(answer) with a short answer "
      "(a name, a number, a few words). You have at most ",
      max_steps, " steps.");
  return out;
}

}  // namespace nbrl::agent
