#include "storage/commit_plan.h"

namespace chstream::storage {

CommitPlan PlanCommit(
    const std::vector<Event>& events,
    absl::FunctionRef<std::optional<int64_t>(std::string_view)> committed) {
  CommitPlan plan;
  plan.kept.reserve(events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    const Event& e = events[i];
    auto [it, inserted] = plan.progress.try_emplace(e.stream);
    StreamProgress& p = it->second;
    if (inserted) p.floor = committed(e.stream);
    if (p.floor.has_value() && e.timepoint <= *p.floor) {
      ++plan.duplicates[e.stream];
      continue;
    }
    p.floor = e.timepoint;
    p.last_kept = i;
    p.advanced = true;
    plan.kept.push_back(i);
  }
  return plan;
}

}  // namespace chstream::storage
