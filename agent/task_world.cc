#include "agent/task_world.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace nbrl::agent {
namespace {

using nlohmann::json;

// ---- The knowledge base ----

struct City {
  std::string name;
  std::string country;
  int64_t population;
};
struct Person {
  std::string name;
  int birth_year;
  int birthplace;  // city index
  std::string occupation;
  int employer;  // organisation index
};
struct Org {
  std::string name;
  std::string kind;
  int founded;
  int city;     // headquarters
  int founder;  // person index
  int64_t employees;
};
struct Work {
  std::string title;
  std::string kind;  // novel, album, painting, treatise
  int creator;       // person index
  int year;
};

struct Kb {
  std::vector<City> cities;
  std::vector<Person> people;
  std::vector<Org> orgs;
  std::vector<Work> works;
};

constexpr const char* kSyllables[] = {
    "ar",  "bel", "cor", "dan", "el",  "fen",  "gar", "hal", "is",  "jor", "kel",
    "lum", "mar", "nor", "ol",  "per", "quel", "ras", "sel", "tor", "ul",  "ven",
    "wyn", "yor", "zar", "bri", "cas", "dro",  "esk", "fal", "gri", "hes", "ith",
    "kra", "lin", "mor", "nev", "orr", "pla",  "riv", "sto", "tha", "vek", "wil"};
constexpr const char* kCountries[] = {"Veridia", "Osmark",  "Tellurane",
                                      "Quorvia", "Basmeri", "Lenhold"};
constexpr const char* kOccupations[] = {
    "chemist",   "architect", "composer",   "cartographer", "engineer",
    "historian", "painter",   "astronomer", "novelist",     "physician"};
constexpr const char* kOrgKinds[] = {"Institute",   "Company",   "Foundation",
                                     "Observatory", "Guild",     "Press",
                                     "Orchestra",   "Laboratory"};
constexpr const char* kWorkKinds[] = {"novel", "album", "painting", "treatise"};
constexpr const char* kAdjectives[] = {
    "Glass",  "Silent",  "Amber",   "Hollow", "Northern", "Copper", "Last", "Quiet",
    "Winter", "Crimson", "Distant", "Iron",   "Paper",    "Golden", "Salt"};
constexpr const char* kNouns[] = {"Orchard", "Harbor",  "Lantern", "Meridian", "Garden",
                                  "Archive", "Compass", "Tide",    "Atlas",    "Choir",
                                  "Bridge",  "Engine",  "Mirror",  "Voyage",   "Canal"};

template <typename T, size_t N>
const T& Pick(const T (&items)[N], std::mt19937_64& rng) {
  return items[std::uniform_int_distribution<size_t>(0, N - 1)(rng)];
}

int Uniform(std::mt19937_64& rng, int lo, int hi) {
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

std::string Capitalize(std::string s) {
  if (!s.empty())
    s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

std::string Word(std::mt19937_64& rng, int syllables) {
  std::string w;
  for (int i = 0; i < syllables; ++i) w += Pick(kSyllables, rng);
  return Capitalize(w);
}

// A fresh name from `make`, unique within `used`.
template <typename Make>
std::string Unique(std::set<std::string>& used, Make make) {
  for (int attempt = 0;; ++attempt) {
    std::string name = make();
    // Small name spaces (work titles) run out: number the later ones.
    if (attempt >= 50) name = absl::StrCat(name, " ", attempt - 48);
    if (used.insert(name).second) return name;
  }
}

Kb BuildKb(const TaskWorldOptions& o, std::mt19937_64& rng) {
  Kb kb;
  std::set<std::string> used;
  for (int i = 0; i < o.cities; ++i) {
    City c;
    c.name = Unique(used, [&] { return Word(rng, Uniform(rng, 2, 3)); });
    c.country = Pick(kCountries, rng);
    c.population =
        static_cast<int64_t>(Uniform(rng, 12, 2400)) * 1000 + Uniform(rng, 0, 999);
    kb.cities.push_back(c);
  }
  for (int i = 0; i < o.organisations; ++i) {
    Org g;
    g.kind = Pick(kOrgKinds, rng);
    g.name = Unique(used, [&] { return absl::StrCat(Word(rng, 2), " ", g.kind); });
    kb.orgs.push_back(g);
  }
  for (int i = 0; i < o.people; ++i) {
    Person p;
    p.name = Unique(used, [&] {
      return absl::StrCat(Word(rng, 2), " ", Word(rng, Uniform(rng, 2, 3)));
    });
    p.birth_year = Uniform(rng, 1780, 1960);
    p.birthplace = Uniform(rng, 0, o.cities - 1);
    p.occupation = Pick(kOccupations, rng);
    p.employer = Uniform(rng, 0, o.organisations - 1);
    kb.people.push_back(p);
  }
  for (Org& g : kb.orgs) {
    g.founder = Uniform(rng, 0, o.people - 1);
    g.founded = kb.people[g.founder].birth_year + Uniform(rng, 22, 60);
    g.city = Uniform(rng, 0, o.cities - 1);
    g.employees = Uniform(rng, 8, 5000);
  }
  for (int i = 0; i < o.works; ++i) {
    Work w;
    w.kind = Pick(kWorkKinds, rng);
    w.title = Unique(used, [&] {
      return absl::StrCat("The ", Pick(kAdjectives, rng), " ", Pick(kNouns, rng));
    });
    w.creator = Uniform(rng, 0, o.people - 1);
    w.year = kb.people[w.creator].birth_year + Uniform(rng, 18, 70);
    kb.works.push_back(w);
  }
  return kb;
}

// ---- Documents ----

std::string PersonId(int i) { return absl::StrCat("person-", i); }
std::string OrgId(int i) { return absl::StrCat("org-", i); }
std::string CityId(int i) { return absl::StrCat("city-", i); }
std::string WorkId(int i) { return absl::StrCat("work-", i); }

std::vector<WorldDocument> Render(const Kb& kb) {
  std::vector<WorldDocument> docs;
  for (size_t i = 0; i < kb.cities.size(); ++i) {
    const City& c = kb.cities[i];
    docs.push_back(
        {CityId(i), c.name,
         absl::StrFormat("%s is a city in %s with a population of %d.\n\n"
                         "Country: %s\nPopulation: %d\n",
                         c.name, c.country, c.population, c.country, c.population)});
  }
  for (size_t i = 0; i < kb.people.size(); ++i) {
    const Person& p = kb.people[i];
    const std::string& city = kb.cities[p.birthplace].name;
    const std::string& org = kb.orgs[p.employer].name;
    docs.push_back(
        {PersonId(i), p.name,
         absl::StrFormat("%s is a %s born in %s in %d. %s works at the %s.\n\n"
                         "Born: %d\nBirthplace: %s\nOccupation: %s\nEmployer: %s\n",
                         p.name, p.occupation, city, p.birth_year, p.name, org,
                         p.birth_year, city, p.occupation, org)});
  }
  for (size_t i = 0; i < kb.orgs.size(); ++i) {
    const Org& g = kb.orgs[i];
    const std::string& city = kb.cities[g.city].name;
    const std::string& founder = kb.people[g.founder].name;
    docs.push_back(
        {OrgId(i), g.name,
         absl::StrFormat("The %s was founded in %d by %s. It is headquartered in %s "
                         "and has %d employees.\n\n"
                         "Founded: %d\nFounder: %s\nHeadquarters: %s\nEmployees: %d\n",
                         g.name, g.founded, founder, city, g.employees, g.founded,
                         founder, city, g.employees)});
  }
  for (size_t i = 0; i < kb.works.size(); ++i) {
    const Work& w = kb.works[i];
    const std::string& creator = kb.people[w.creator].name;
    docs.push_back(
        {WorkId(i), w.title,
         absl::StrFormat("%s is a %s by %s, released in %d.\n\n"
                         "Kind: %s\nCreator: %s\nYear: %d\n",
                         w.title, w.kind, creator, w.year, w.kind, creator, w.year)});
  }
  return docs;
}

// ---- Questions ----

// A question under construction: text, answer, and the plan a solver follows
// (which documents, which fields, what to compute), kept in metadata.
struct Question {
  std::string kind;
  std::string text;
  std::string answer;
  json plan = json::array();  // [{"doc": title, "field": name}, ...]
  std::string op;             // for arithmetic and comparison
};

json Hop(const std::string& title, const std::string& field) {
  return json{{"doc", title}, {"field", field}};
}

// Entities each split may ask about.
struct Subjects {
  std::vector<int> people, orgs, cities, works;
};

class QuestionMaker {
 public:
  QuestionMaker(const Kb& kb, const Subjects& s, std::mt19937_64& rng)
      : kb_(kb), s_(s), rng_(rng) {}

  Question Lookup() {
    switch (Uniform(rng_, 0, 3)) {
      case 0: {
        const Person& p = kb_.people[Any(s_.people)];
        if (Uniform(rng_, 0, 1)) {
          return {"lookup", absl::StrCat("In what year was ", p.name, " born?"),
                  absl::StrCat(p.birth_year), json::array({Hop(p.name, "Born")}), ""};
        }
        return {"lookup", absl::StrCat("Which organisation does ", p.name, " work at?"),
                kb_.orgs[p.employer].name, json::array({Hop(p.name, "Employer")}), ""};
      }
      case 1: {
        const Org& g = kb_.orgs[Any(s_.orgs)];
        if (Uniform(rng_, 0, 1)) {
          return {"lookup", absl::StrCat("Who founded the ", g.name, "?"),
                  kb_.people[g.founder].name, json::array({Hop(g.name, "Founder")}),
                  ""};
        }
        return {
            "lookup", absl::StrCat("In which city is the ", g.name, " headquartered?"),
            kb_.cities[g.city].name, json::array({Hop(g.name, "Headquarters")}), ""};
      }
      case 2: {
        const City& c = kb_.cities[Any(s_.cities)];
        return {"lookup", absl::StrCat("In which country is the city of ", c.name, "?"),
                c.country, json::array({Hop(c.name, "Country")}), ""};
      }
      default: {
        const Work& w = kb_.works[Any(s_.works)];
        return {
            "lookup",
            absl::StrCat("In what year was the ", w.kind, " ", w.title, " released?"),
            absl::StrCat(w.year), json::array({Hop(w.title, "Year")}), ""};
      }
    }
  }

  Question Bridge() {
    switch (Uniform(rng_, 0, 3)) {
      case 0: {
        const Org& g = kb_.orgs[Any(s_.orgs)];
        const Person& f = kb_.people[g.founder];
        return {"bridge",
                absl::StrCat("In which city was the founder of the ", g.name, " born?"),
                kb_.cities[f.birthplace].name,
                json::array({Hop(g.name, "Founder"), Hop("$0", "Birthplace")}), ""};
      }
      case 1: {
        const Org& g = kb_.orgs[Any(s_.orgs)];
        const City& c = kb_.cities[g.city];
        return {"bridge",
                absl::StrCat("In which country is the ", g.name, " headquartered?"),
                c.country,
                json::array({Hop(g.name, "Headquarters"), Hop("$0", "Country")}), ""};
      }
      case 2: {
        const Work& w = kb_.works[Any(s_.works)];
        const Person& p = kb_.people[w.creator];
        return {"bridge",
                absl::StrCat("Which organisation does the creator of the ", w.kind, " ",
                             w.title, " work at?"),
                kb_.orgs[p.employer].name,
                json::array({Hop(w.title, "Creator"), Hop("$0", "Employer")}), ""};
      }
      default: {
        const Person& p = kb_.people[Any(s_.people)];
        const Org& g = kb_.orgs[p.employer];
        return {"bridge",
                absl::StrCat("In what year was the employer of ", p.name, " founded?"),
                absl::StrCat(g.founded),
                json::array({Hop(p.name, "Employer"), Hop("$0", "Founded")}), ""};
      }
    }
  }

  Question Comparison() {
    switch (Uniform(rng_, 0, 2)) {
      case 0: {
        auto [a, b] =
            TwoDistinct(s_.people, [&](int i) { return kb_.people[i].birth_year; });
        const Person& pa = kb_.people[a];
        const Person& pb = kb_.people[b];
        return {"comparison",
                absl::StrCat("Who was born earlier, ", pa.name, " or ", pb.name, "?"),
                pa.birth_year < pb.birth_year ? pa.name : pb.name,
                json::array({Hop(pa.name, "Born"), Hop(pb.name, "Born")}), "min"};
      }
      case 1: {
        auto [a, b] = TwoDistinct(s_.orgs, [&](int i) { return kb_.orgs[i].founded; });
        const Org& ga = kb_.orgs[a];
        const Org& gb = kb_.orgs[b];
        return {"comparison",
                absl::StrCat("Which was founded first, the ", ga.name, " or the ",
                             gb.name, "?"),
                ga.founded < gb.founded ? ga.name : gb.name,
                json::array({Hop(ga.name, "Founded"), Hop(gb.name, "Founded")}), "min"};
      }
      default: {
        auto [a, b] = TwoDistinct(s_.cities, [&](int i) {
          return static_cast<int>(kb_.cities[i].population);
        });
        const City& ca = kb_.cities[a];
        const City& cb = kb_.cities[b];
        return {"comparison",
                absl::StrCat("Which city has the larger population, ", ca.name, " or ",
                             cb.name, "?"),
                ca.population > cb.population ? ca.name : cb.name,
                json::array({Hop(ca.name, "Population"), Hop(cb.name, "Population")}),
                "max"};
      }
    }
  }

  Question Arithmetic() {
    switch (Uniform(rng_, 0, 2)) {
      case 0: {
        const Org& g = kb_.orgs[Any(s_.orgs)];
        const Person& f = kb_.people[g.founder];
        return {"arithmetic",
                absl::StrCat("How many years after the birth of its founder was the ",
                             g.name, " founded?"),
                absl::StrCat(g.founded - f.birth_year),
                json::array({Hop(g.name, "Founded"), Hop(g.name, "Founder"),
                             Hop("$1", "Born")}),
                "$0 - $2"};
      }
      case 1: {
        auto [a, b] = TwoDistinct(s_.cities, [&](int i) {
          return static_cast<int>(kb_.cities[i].population);
        });
        const City& ca = kb_.cities[a];
        const City& cb = kb_.cities[b];
        return {"arithmetic",
                absl::StrCat("What is the combined population of ", ca.name, " and ",
                             cb.name, "?"),
                absl::StrCat(ca.population + cb.population),
                json::array({Hop(ca.name, "Population"), Hop(cb.name, "Population")}),
                "$0 + $1"};
      }
      default: {
        const Work& w = kb_.works[Any(s_.works)];
        const Person& p = kb_.people[w.creator];
        return {"arithmetic",
                absl::StrCat("How old was the creator of the ", w.kind, " ", w.title,
                             " in the year it was released?"),
                absl::StrCat(w.year - p.birth_year),
                json::array(
                    {Hop(w.title, "Year"), Hop(w.title, "Creator"), Hop("$1", "Born")}),
                "$0 - $2"};
      }
    }
  }

 private:
  int Any(const std::vector<int>& v) {
    return v[std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng_)];
  }
  // Two subjects whose `key` differs, so the comparison has one answer.
  template <typename Key>
  std::pair<int, int> TwoDistinct(const std::vector<int>& v, Key key) {
    for (int attempt = 0; attempt < 100; ++attempt) {
      int a = Any(v), b = Any(v);
      if (a != b && key(a) != key(b)) return {a, b};
    }
    // Degenerate subject sets: fall back to the extremes, which differ unless every
    // key is equal (then any answer is right).
    auto [lo, hi] = std::minmax_element(v.begin(), v.end(),
                                        [&](int x, int y) { return key(x) < key(y); });
    return {*lo, *hi};
  }

  const Kb& kb_;
  const Subjects& s_;
  std::mt19937_64& rng_;
};

// Splits indices 0..n-1 into train / val / test subject sets (70 / 15 / 15).
std::vector<std::vector<int>> Partition(int n, std::mt19937_64& rng) {
  std::vector<int> idx(n);
  for (int i = 0; i < n; ++i) idx[i] = i;
  std::shuffle(idx.begin(), idx.end(), rng);
  int val = std::max(2, n * 15 / 100), test = std::max(2, n * 15 / 100);
  std::vector<std::vector<int>> out(3);
  out[2].assign(idx.begin(), idx.begin() + test);
  out[1].assign(idx.begin() + test, idx.begin() + test + val);
  out[0].assign(idx.begin() + test + val, idx.end());
  return out;
}

std::vector<Example> MakeQuestions(const Kb& kb, const Subjects& subjects, int count,
                                   const std::string& split, const TaskWorldOptions& o,
                                   std::mt19937_64& rng) {
  QuestionMaker maker(kb, subjects, rng);
  std::discrete_distribution<int> kind(
      {o.weight_lookup, o.weight_bridge, o.weight_comparison, o.weight_arithmetic});
  std::vector<Example> out;
  std::set<std::string> seen;
  for (int i = 0; i < count; ++i) {
    Question q;
    for (int attempt = 0; attempt < 50; ++attempt) {
      switch (kind(rng)) {
        case 0:
          q = maker.Lookup();
          break;
        case 1:
          q = maker.Bridge();
          break;
        case 2:
          q = maker.Comparison();
          break;
        default:
          q = maker.Arithmetic();
      }
      if (seen.insert(q.text).second) break;
    }
    Example ex;
    ex.id = absl::StrFormat("%s-%05d", split, i);
    ex.question = q.text;
    ex.answers = {q.answer};
    json meta = {{"kind", q.kind}, {"plan", q.plan}};
    if (!q.op.empty()) meta["op"] = q.op;
    ex.metadata_json = meta.dump();
    out.push_back(std::move(ex));
  }
  return out;
}

}  // namespace

absl::StatusOr<TaskWorld> BuildTaskWorld(const TaskWorldOptions& o) {
  // Each kind of subject is split 70/15/15 with at least 2 per split, and every
  // split needs two of each for comparisons: 6 is the least that gives that.
  if (o.people < 8 || o.organisations < 6 || o.cities < 6 || o.works < 6) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task world too small: need at least 8 people, 6 organisations, 6 cities and 6 "
        "works (every split asks about at least 2 of each), got ",
        o.people, ", ", o.organisations, ", ", o.cities, ", ", o.works));
  }
  if (o.train_questions < 0 || o.val_questions < 0 || o.test_questions < 0) {
    return absl::InvalidArgumentError("question counts must be >= 0");
  }
  double total =
      o.weight_lookup + o.weight_bridge + o.weight_comparison + o.weight_arithmetic;
  if (o.weight_lookup < 0 || o.weight_bridge < 0 || o.weight_comparison < 0 ||
      o.weight_arithmetic < 0 || !(total > 0)) {
    return absl::InvalidArgumentError(
        "question kind weights must be >= 0 and not all 0");
  }
  std::mt19937_64 rng(o.seed);
  Kb kb = BuildKb(o, rng);
  TaskWorld world;
  world.documents = Render(kb);

  auto people = Partition(o.people, rng);
  auto orgs = Partition(o.organisations, rng);
  auto cities = Partition(o.cities, rng);
  auto works = Partition(o.works, rng);
  const char* names[] = {"train", "val", "test"};
  const int counts[] = {o.train_questions, o.val_questions, o.test_questions};
  std::vector<Example>* outs[] = {&world.train, &world.val, &world.test};
  for (int s = 0; s < 3; ++s) {
    Subjects subjects{people[s], orgs[s], cities[s], works[s]};
    // Each split has its own stream, so changing one split's size leaves the
    // others' questions unchanged.
    std::mt19937_64 split_rng(o.seed * 1000003 + static_cast<uint64_t>(s) + 1);
    *outs[s] = MakeQuestions(kb, subjects, counts[s], names[s], o, split_rng);
  }
  return world;
}

absl::Status WriteTaskWorld(const TaskWorld& world, const std::string& dir) {
  std::string corpus;
  for (const WorldDocument& d : world.documents) {
    json j = {{"id", d.id}, {"title", d.title}, {"text", d.text}};
    absl::StrAppend(&corpus, j.dump(), "\n");
  }
  RETURN_IF_ERROR(
      common::WriteFileAtomically(absl::StrCat(dir, "/corpus.jsonl"), corpus));
  RETURN_IF_ERROR(WriteJsonl(world.train, absl::StrCat(dir, "/train.jsonl")));
  RETURN_IF_ERROR(WriteJsonl(world.val, absl::StrCat(dir, "/val.jsonl")));
  return WriteJsonl(world.test, absl::StrCat(dir, "/test.jsonl"));
}

}  // namespace nbrl::agent
