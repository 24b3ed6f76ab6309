// nbrl_tokenizer_bench: encoding throughput of nbrl's tokenizer, comparable with
// `node tests/tokenizer_parity/encode.js TOKENIZER --bench FILE REPEATS` (same
// line-by-line loop, same token count).
//
//   nbrl_tokenizer_bench TOKENIZER_DIR FILE [REPEATS]
//
// Prints {"tokens": N, "seconds": S, "tokens_per_second": R} on one line. Both
// sides encode with added tokens matched (node's encode()), and both report the
// whole loop, the first pass warming their BPE caches included.
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "model/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: nbrl_tokenizer_bench TOKENIZER_DIR FILE [REPEATS]\n";
    return 2;
  }
  auto tokenizer = nbrl::model::Tokenizer::Load(argv[1]);
  if (!tokenizer.ok()) {
    std::cerr << tokenizer.status().message() << "\n";
    return 1;
  }
  auto text = nbrl::common::ReadFile(argv[2]);
  if (!text.ok()) {
    std::cerr << text.status().message() << "\n";
    return 1;
  }
  const int repeats = argc > 3 ? std::atoi(argv[3]) : 3;
  // Lines with their newline, like node's split(/(?<=\n)/).
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(*text, absl::ByString("\n"))) {
    lines.push_back(std::string(line) + "\n");
  }
  if (!text->empty() && text->back() == '\n') lines.pop_back();
  if (!lines.empty() && (text->empty() || text->back() != '\n'))
    lines.back().pop_back();
  size_t tokens = 0;
  auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < repeats; ++r) {
    for (const std::string& line : lines) {
      tokens += (*tokenizer)->EncodeWithSpecialTokens(line).size();
    }
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "{\"tokens\": " << tokens << ", \"seconds\": " << seconds
            << ", \"tokens_per_second\": " << tokens / seconds << "}\n";
  return 0;
}
