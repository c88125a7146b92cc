#include "plan/replan.h"

#include <cstdlib>
#include <map>
#include <tuple>
#include <vector>

#include "absl/strings/str_format.h"
#include "schedule/generators/generate.h"

namespace tandem::plan {

std::string JobShape::Flags() const {
  return absl::StrFormat("--kind=%s --pp=%d --dp=%d --ep=%d --microbatches=%d --tokens=%d", schedule::KindName(kind),
                         pp, dp, ep, microbatches, tokens);
}

absl::StatusOr<JobShape> Replan(const JobShape& job, int ranks, int units, int experts) {
  if (ranks < 1) {
    return absl::FailedPreconditionError(absl::StrFormat("replan: no ranks left (of %d)", job.ranks()));
  }
  const std::vector<schedule::Kind> fallback = {schedule::Kind::kDualPipe, schedule::Kind::kDualPipeV,
                                                schedule::Kind::kZBV,      schedule::Kind::kZB1P,
                                                schedule::Kind::k1F1B,     schedule::Kind::kGPipe};
  const int64_t global = job.global_batch();
  const int slots = experts + job.extra_slots;
  std::map<std::tuple<schedule::Kind, int, int>, bool> fits;  // (kind, pp, microbatches)
  auto schedule_fits = [&](schedule::Kind kind, int pp, int m) {
    auto [it, fresh] = fits.try_emplace({kind, pp, m}, false);
    if (fresh) {
      absl::StatusOr<schedule::Schedule> s = schedule::Generate({kind, pp, m});
      it->second = s.ok() && s->stages <= units;
    }
    return it->second;
  };
  bool found = false;
  JobShape best;
  std::tuple<int, int, int, int, int, int> best_key;  // larger is better
  for (int pp = 1; pp <= ranks; ++pp) {
    // The job's kind, else the first fallback whose schedule fits pp.
    std::vector<schedule::Kind> kinds = {job.kind};
    for (schedule::Kind k : fallback) kinds.push_back(k);
    for (int dp = 1; pp * dp <= ranks; ++dp) {
      for (int ep = std::min(dp, job.ep); ep >= 1; --ep) {
        if (dp % ep != 0 || slots % ep != 0) continue;
        for (schedule::Kind kind : kinds) {
          bool kind_fits = false;
          // Micro-batch counts nearest the job's first.
          for (int delta = 0; delta <= 4 * job.microbatches + 8 && !kind_fits; ++delta) {
            for (int m : {job.microbatches - delta, job.microbatches + delta}) {
              if (m < 1 || global % (int64_t{m} * dp) != 0) continue;
              if (!schedule_fits(kind, pp, m)) continue;
              kind_fits = true;
              JobShape c = job;
              c.kind = kind;
              c.pp = pp;
              c.dp = dp;
              c.ep = ep;
              c.microbatches = m;
              c.tokens = static_cast<int>(global / (int64_t{m} * dp));
              const auto key = std::make_tuple(pp * dp, kind == job.kind ? 1 : 0, pp == job.pp ? 1 : 0,
                                               -std::abs(pp - job.pp), ep, -delta);
              if (!found || key > best_key) {
                found = true;
                best = c;
                best_key = key;
              }
              break;
            }
          }
          if (kind_fits) break;  // the first kind that fits this pp
        }
      }
    }
  }
  if (!found) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "replan: no mesh of at most %d ranks fits a global batch of %d samples (%d units, %d expert slots)", ranks,
        global, units, slots));
  }
  return best;
}

}  // namespace tandem::plan
