// The embedded task world: from a seed, a fictional knowledge base (people,
// places, organisations, works; dates, numbers and relations between them),
// rendered as documents for the sandbox's search index, and questions of four
// kinds whose answers need those documents:
//
//   lookup      single hop:  "In what year was Ilvana Dorsk born?"
//   bridge      two hops:    "In which city was the founder of the Zarnow Institute
//   born?" comparison  two lookups: "Who was born earlier, Ilvana Dorsk or Teo
//   Marrick?" arithmetic  lookups + Python: "How many years after its founder's birth
//   was the
//               Zarnow Institute founded?"
//
// Entities are invented, so answers cannot be memorised from pre-training. Splits
// (train / val / test) ask about disjoint subject entities, so a test question's
// facts are never the subject of a training question. Everything is a pure function
// of the options: the same seed gives the same world, byte for byte.
#ifndef NBRL_AGENT_TASK_WORLD_H_
#define NBRL_AGENT_TASK_WORLD_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/dataset.h"

namespace nbrl::agent {

struct TaskWorldOptions {
  uint64_t seed = 1;
  // Entities of each kind in the world.
  int people = 240;
  int organisations = 80;
  int cities = 40;
  int works = 120;
  // Questions per split.
  int train_questions = 2000;
  int val_questions = 200;
  int test_questions = 200;
  // Relative frequency of each question kind (need not sum to 1).
  double weight_lookup = 0.3;
  double weight_bridge = 0.3;
  double weight_comparison = 0.2;
  double weight_arithmetic = 0.2;
};

// One searchable document.
struct WorldDocument {
  std::string id;     // e.g. "person-17"
  std::string title;  // the entity's name
  std::string text;
};

struct TaskWorld {
  std::vector<WorldDocument> documents;
  std::vector<Example> train, val, test;
};

// Builds the world. InvalidArgument for sizes too small to ask every kind of
// question (at least 8 people, 6 organisations, 6 cities, 6 works) or negative
// question counts or weights.
absl::StatusOr<TaskWorld> BuildTaskWorld(const TaskWorldOptions& options);

// Writes DIR/corpus.jsonl ({id, title, text} per line, what `nbrl-sandbox index`
// reads) and DIR/{train,val,test}.jsonl (nbrl dataset JSONL).
absl::Status WriteTaskWorld(const TaskWorld& world, const std::string& dir);

}  // namespace nbrl::agent

#endif  // NBRL_AGENT_TASK_WORLD_H_
