// Prints what this CPU can run and the execution plan `auto` picks on it:
//
//   openelm_cpu_info                  # human-readable
//   openelm_cpu_info --field=detected # just the detected ISA level (scripts)
//
// Honours OPENELM_MAX_CPU_ISA like the server does.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "engine/kernels/cpu_isa.h"
#include "engine/model/execution_plan.h"

ABSL_FLAG(std::string, field, "",
          "print only this: detected | effective | onednn | plan (empty: everything)");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Prints the CPU's ISA levels and the default execution plan.");
  absl::ParseCommandLine(argc, argv);
  using namespace openelm;  // NOLINT: a tiny tool
  const absl::StatusOr<ExecutionPlan> plan = ResolvePlan(EffectiveCpuIsa(), {});
  const std::string plan_text = plan.ok() ? plan->Describe() : plan.status().ToString();
  const std::string field = absl::GetFlag(FLAGS_field);
  if (field.empty()) {
    std::printf("%s\nauto plan: %s\n", DescribeCpu().c_str(), plan_text.c_str());
  } else if (field == "detected") {
    std::printf("%s\n", CpuIsaName(DetectedCpuIsa()));
  } else if (field == "effective") {
    std::printf("%s\n", CpuIsaName(EffectiveCpuIsa()));
  } else if (field == "onednn") {
    std::printf("%s\n", OnednnEffectiveIsa().c_str());
  } else if (field == "plan") {
    std::printf("%s\n", plan_text.c_str());
  } else {
    std::fprintf(stderr, "--field=%s: expected detected, effective, onednn or plan\n",
                 field.c_str());
    return 2;
  }
  return 0;
}
