// One rank of a multi-process training step (started by tools/launch.sh):
// bootstraps over the TCP store, runs its program of --kind on the store
// backend with the reference model, and checks its results against
// sequential training computed locally: losses of its last stages bit for
// bit; gradients of its stage copies bit for bit, or for DualPipe (whose two
// copies of a stage are summed by an all-reduce between ranks r and R-1-r)
// with 1 - 2 sum(xy) / sum(x^2 + y^2) < 1e-10.
#include <cstdio>
#include <cstring>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "comm/store/rendezvous.h"
#include "comm/store_backend/store_communicator.h"
#include "schedule/executor/executor.h"
#include "schedule/generators/generate.h"
#include "schedule/lowering/lower.h"
#include "train/model_stage_work.h"
#include "train/testing/step_check.h"

ABSL_FLAG(std::string, kind, "1f1b", "Schedule kind.");
ABSL_FLAG(int, microbatches, 8, "Micro-batches.");

namespace tandem::train {
namespace {

using schedule::Kind;

absl::Status Main() {
  const Deadline deadline = Deadline::In(absl::Minutes(2));
  TANDEM_ASSIGN_OR_RETURN(comm::Bootstrap boot, comm::BootstrapFromEnv(deadline));
  const int rank = boot.info.rank, ranks = boot.info.world_size;
  std::unique_ptr<comm::Communicator> comm = comm::MakeStoreCommunicator(boot.store.get(), rank, ranks, "step/");
  TANDEM_ASSIGN_OR_RETURN(Kind kind, schedule::ParseKind(absl::GetFlag(FLAGS_kind)));
  const int n = absl::GetFlag(FLAGS_microbatches);
  TANDEM_ASSIGN_OR_RETURN(Schedule compute, schedule::Generate({kind, ranks, n}));
  TANDEM_ASSIGN_OR_RETURN(Schedule s, schedule::Lower(compute));
  model::ModelConfig c;
  c.num_layers = 2 * s.stages - 2;  // 2 units per stage
  c.seed = 11;
  const PipelineData data = testing::StepData(c, n);
  TANDEM_ASSIGN_OR_RETURN(auto work, ModelStageWork::Create(s, rank, c, EvenBounds(model::NumUnits(c), s.stages), {}));
  TANDEM_RETURN_IF_ERROR(work->SetData(&data));
  schedule::StoreAbortBoard board(boot.store.get(), "step/abort");
  schedule::ExecutorOptions o;
  o.abort = &board;
  o.timeout = absl::Minutes(1);
  TANDEM_ASSIGN_OR_RETURN(schedule::RankRun run, schedule::RunRank(s, rank, *work, *comm, o));

  TANDEM_ASSIGN_OR_RETURN(auto reference, model::Model::Create(c));
  TANDEM_ASSIGN_OR_RETURN(std::vector<double> ref_losses, Sequential(*reference, data));
  int losses = 0;
  for (const auto& [g, l] : work->losses()) {
    if (l != ref_losses[g])
      return absl::InternalError(absl::StrFormat("loss of micro-batch %d: %.17g != %.17g", g, l, ref_losses[g]));
    ++losses;
  }
  // DualPipe: sum the two copies of each stage held by r and R-1-r.
  if (s.directions == 2) {
    TANDEM_ASSIGN_OR_RETURN(auto pair, comm->Split(std::min(rank, ranks - 1 - rank), rank, deadline));
    TANDEM_RETURN_IF_ERROR(work->SumCopyGradients(*pair, deadline));
  }
  int params = 0;
  const std::vector<int>& bounds = work->bounds();
  for (int st = 0; st < s.stages; ++st) {
    for (int d = 0; d < s.directions; ++d) {
      if (s.RankOf(d, st) != rank) continue;
      model::Model* m = work->model(st, d);
      for (int u = bounds[st]; u < bounds[st + 1]; ++u) {
        std::vector<model::Parameter*> got = m->UnitParameters(u), want = reference->UnitParameters(u);
        for (size_t p = 0; p < got.size(); ++p) {
          absl::Span<float> g = got[p]->grad.span(), w = want[p]->grad.span();
          if (s.directions == 1) {
            if (std::memcmp(g.data(), w.data(), 4 * w.size()) != 0) {
              return absl::InternalError(absl::StrFormat("gradient of %s differs", want[p]->name));
            }
          } else {
            double xy = 0, xx = 0;
            for (size_t i = 0; i < w.size(); ++i)
              xy += double{g[i]} * w[i], xx += double{g[i]} * g[i] + double{w[i]} * w[i];
            if (xx > 0 && 1 - 2 * xy / xx > 1e-10) {
              return absl::InternalError(
                  absl::StrFormat("gradient of %s: difference %g", want[p]->name, 1 - 2 * xy / xx));
            }
          }
          ++params;
        }
      }
    }
  }
  std::printf("ok: rank %d of %d (%s): %d losses and %d parameter gradients equal sequential training; step %.1f ms\n",
              rank, ranks, std::string(schedule::KindName(kind)).c_str(), losses, params, run.step_us / 1000);
  return boot.Finish(deadline);
}

}  // namespace
}  // namespace tandem::train

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status s = tandem::train::Main();
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
