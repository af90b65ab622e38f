#include "storage/commit_plan.h"

#include <algorithm>

#include "storage/string_list.h"

namespace chstream::storage {
namespace {

bool HasData(const Event& e) {
  return !e.data_json.empty() || !e.data_pb.empty();
}

// Indexes j into `kept` of the events that `selected`, stably sorted by
// `key` (so that a key's events stay in position order).
template <typename Select, typename Key>
std::vector<size_t> SortedByKey(const std::vector<Event>& events,
                                const std::vector<size_t>& kept,
                                Select selected, Key key) {
  std::vector<size_t> order;
  order.reserve(kept.size());
  for (size_t j = 0; j < kept.size(); ++j) {
    if (selected(events[kept[j]])) order.push_back(j);
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) {
    return key(events[kept[x]]) < key(events[kept[y]]);
  });
  return order;
}

}  // namespace

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

std::vector<CompanyChange> MergeCompanyChanges(const std::vector<Event>& events,
                                               const std::vector<size_t>& kept,
                                               uint64_t first_position) {
  const auto number = [](const Event& e) -> std::string_view {
    return e.company_number;
  };
  std::vector<CompanyChange> out;
  for (size_t j : SortedByKey(events, kept, IsCompanyEvent, number)) {
    const Event& e = events[kept[j]];
    if (out.empty() || out.back().company_number != number(e)) {
      out.emplace_back().company_number = number(e);
    }
    CompanyChange& c = out.back();
    const uint64_t position = first_position + j;
    if (e.company.has_value()) c.fields = &e;
    if (HasData(e)) c.data_position = position;
    c.last = &e;
    c.last_position = position;
  }
  return out;
}

std::vector<ResourceChange> MergeResourceChanges(
    const std::vector<Event>& events, const std::vector<size_t>& kept,
    uint64_t first_position) {
  const auto uri = [](const Event& e) -> std::string_view {
    return e.resource_uri;
  };
  const auto has_uri = [](const Event& e) { return !e.resource_uri.empty(); };
  std::vector<ResourceChange> out;
  for (size_t j : SortedByKey(events, kept, has_uri, uri)) {
    const Event& e = events[kept[j]];
    if (out.empty() || out.back().resource_uri != uri(e)) {
      out.emplace_back().resource_uri = uri(e);
    }
    ResourceChange& r = out.back();
    const uint64_t position = first_position + j;
    if (!e.company_number.empty()) r.company_number = e.company_number;
    if (HasData(e)) r.data_position = position;
    r.last = &e;
    r.last_position = position;
  }
  return out;
}

}  // namespace chstream::storage
