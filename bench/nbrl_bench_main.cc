// nbrl-bench: runs two shell commands side by side and prints the ratio.
//
//   nbrl-bench --name startup --rounds 7
//       --measured 'build/nbrl version' --baseline 'python3 -c "import torch"'
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "bench/harness.h"

namespace {

constexpr char kUsage[] =
    "nbrl-bench: run a measured command and a baseline side by side\n\n"
    "Usage: nbrl-bench --name NAME --measured CMD --baseline CMD [options]\n\n"
    "  --measured CMD        command of the measured side (run with /bin/sh -c)\n"
    "  --baseline CMD        command of the baseline side\n"
    "  --rounds N            timed rounds per side, alternating (default 5)\n"
    "  --warmup N            untimed rounds per side first (default 1)\n"
    "  --unit U              unit of NBRL_BENCH_VALUE lines (default s: wall time)\n"
    "  --higher-is-better    values are rates, not times\n"
    "  --measured-label L, --baseline-label L   names in the report\n"
    "  --json FILE           also write the JSON record to FILE\n\n"
    "A command's value is its wall time, or the number on a stdout line\n"
    "NBRL_BENCH_VALUE=<number> when it prints one. The ratio is > 1 when the\n"
    "measured side is better.\n";

}  // namespace

int main(int argc, char** argv) {
  nbrl::bench::SideBySideOptions options;
  std::string measured, baseline, json_path;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) {
        std::cerr << "nbrl-bench: " << arg << " needs a value\n";
        return false;
      }
      *out = argv[++i];
      return true;
    };
    auto int_value = [&](int* out) {
      std::string text;
      if (!value(&text)) return false;
      if (!absl::SimpleAtoi(text, out)) {
        std::cerr << "nbrl-bench: " << arg << " needs an integer, got '" << text
                  << "'\n";
        return false;
      }
      return true;
    };
    bool ok = true;
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (arg == "--name") {
      ok = value(&options.name);
    } else if (arg == "--measured") {
      ok = value(&measured);
    } else if (arg == "--baseline") {
      ok = value(&baseline);
    } else if (arg == "--rounds") {
      ok = int_value(&options.rounds);
    } else if (arg == "--warmup") {
      ok = int_value(&options.warmup);
    } else if (arg == "--unit") {
      ok = value(&options.unit);
    } else if (arg == "--higher-is-better") {
      options.higher_is_better = true;
    } else if (arg == "--measured-label") {
      ok = value(&options.measured_label);
    } else if (arg == "--baseline-label") {
      ok = value(&options.baseline_label);
    } else if (arg == "--json") {
      ok = value(&json_path);
    } else {
      std::cerr << "nbrl-bench: unknown argument '" << arg << "' (try --help)\n";
      return 2;
    }
    if (!ok) return 2;
  }
  if (options.name.empty() || measured.empty() || baseline.empty()) {
    std::cerr
        << "nbrl-bench: --name, --measured and --baseline are required (try --help)\n";
    return 2;
  }
  std::cerr << "nbrl-bench: " << options.name << ": " << options.warmup
            << " warm-up and " << options.rounds << " timed rounds per side\n";
  auto result = nbrl::bench::RunSideBySide(options, nbrl::bench::CommandProbe(measured),
                                           nbrl::bench::CommandProbe(baseline));
  if (!result.ok()) {
    std::cerr << "nbrl-bench: " << result.status().message() << "\n";
    return 1;
  }
  std::cout << nbrl::bench::FormatResult(*result);
  if (!json_path.empty()) {
    if (auto st = nbrl::bench::WriteResultJson(*result, json_path); !st.ok()) {
      std::cerr << "nbrl-bench: " << st.message() << "\n";
      return 1;
    }
    std::cout << "  record: " << json_path << "\n";
  }
  return 0;
}
