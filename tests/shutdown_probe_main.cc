// A minimal nbrl process for the process tests: it works through items until
// SIGINT/SIGTERM, finishes the item in flight, records how many it finished, and
// exits through RunProgram like every nbrl binary.
//
//   shutdown_probe [--config FILE] [key=value ...] [--stuck]
//
// Prints "ready metrics_port=<port>" once running. With --stuck it ignores shutdown
// (to test the grace period and the second signal).
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/metrics.h"
#include "common/process.h"
#include "glog/logging.h"

int main(int argc, char** argv) {
  nbrl::common::ProgramSpec spec;
  spec.name = "shutdown_probe";
  spec.component = "probe";
  spec.summary = "test process that works until told to stop";
  spec.bool_flags = {"--stuck"};
  spec.run = [](nbrl::common::ProcessContext& ctx) -> absl::Status {
    bool stuck = !ctx.args.empty() && ctx.args[0] == "--stuck";
    auto& items = nbrl::common::CounterFamily(*ctx.registry, "nbrl_probe_items_total",
                                              "Work items finished.")
                      .Add({});
    std::cout << "ready metrics_port=" << ctx.metrics->port() << std::endl;
    int64_t done = 0;
    while (stuck || !ctx.shutdown->requested()) {
      absl::SleepFor(absl::Milliseconds(20));  // one item of "work"
      items.Increment();
      ++done;
    }
    LOG(INFO) << "finished " << done << " items";
    return nbrl::common::WriteFileAtomically(ctx.run_dir + "/probe-done.txt",
                                             absl::StrCat(done, "\n"));
  };
  return nbrl::common::RunProgram(spec, argc, argv);
}
