// Answer scoring with SQuAD normalisation: exact match and token F1 against one or
// more gold answers (the maximum over golds counts).
//
// Normalisation, as the SQuAD evaluation script does it: lower-case, drop
// punctuation, drop the articles "a", "an", "the", collapse whitespace. Lower-casing
// and punctuation cover ASCII; other UTF-8 text is compared as written.
//
// Thread safety: pure functions.
#ifndef NBRL_AGENT_ANSWER_MATCH_H_
#define NBRL_AGENT_ANSWER_MATCH_H_

#include <string>
#include <vector>

namespace nbrl::agent {

std::string NormalizeAnswer(const std::string& text);

// 1 when the normalised prediction equals a normalised gold answer, else 0.
double ExactMatch(const std::string& prediction, const std::vector<std::string>& golds);

// Token-level F1 of normalised prediction and gold, maximised over golds. Two empty
// answers score 1; one empty answer scores 0.
double F1Score(const std::string& prediction, const std::vector<std::string>& golds);

// For numeric answers: 1 when prediction and a gold parse as numbers (commas,
// a leading '$', a trailing '%' allowed) within `rel_tol` relative or `abs_tol`
// absolute difference; otherwise falls back to ExactMatch.
double NumericMatch(const std::string& prediction,
                    const std::vector<std::string>& golds, double rel_tol = 1e-6,
                    double abs_tol = 1e-9);

}  // namespace nbrl::agent

#endif  // NBRL_AGENT_ANSWER_MATCH_H_
