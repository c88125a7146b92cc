// One rank of a training job over processes (started by tools/launch):
// bootstraps over the TCP store, trains --steps steps of the reference model
// on a --pp x --dp mesh (EP --ep inside DP) with //train's Trainer on the
// store backend, and prints "rank R of N: fingerprint HEX" where HEX is
// FNV-1a-64 over the raw bytes of every parameter its stage copies train and
// every step's loss, so that two runs can be compared bit for bit
// (multiprocess_overlap_test). With --check_gradients, after the first step
// it compares the gradients of the parameters it trains with sequential
// training on the global batch (computed here) and prints "rank R:
// gradient distance D" (testing::CalDiff), failing above 1e-10
// (multiprocess_mesh_test).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/fnv.h"
#include "base/status_macros.h"
#include "comm/store/rendezvous.h"
#include "comm/store_backend/store_communicator.h"
#include "train/data.h"
#include "train/mesh.h"
#include "train/model_stage_work.h"
#include "train/testing/step_check.h"
#include "train/trainer.h"

ABSL_FLAG(std::string, kind, "dualpipe", "Schedule kind.");
ABSL_FLAG(int, pp, 2, "Pipeline ranks.");
ABSL_FLAG(int, dp, 2, "Data-parallel replicas of each stage.");
ABSL_FLAG(int, ep, 2, "Expert-parallel group size (divides --dp).");
ABSL_FLAG(int, microbatches, 4, "Micro-batches per step.");
ABSL_FLAG(int, steps, 2, "Training steps.");
ABSL_FLAG(int, extra_slots, 2, "Redundant expert slots per MoE layer.");
ABSL_FLAG(bool, overlap, true, "Overlap expert-parallel exchanges with compute.");
ABSL_FLAG(bool, check_gradients, false, "Check the first step's gradients against sequential training.");

namespace tandem::train {
namespace {

absl::Status Main() {
  const Deadline deadline = Deadline::In(absl::Minutes(2));
  TrainerOptions o;
  TANDEM_ASSIGN_OR_RETURN(o.kind, schedule::ParseKind(absl::GetFlag(FLAGS_kind)));
  o.pp = absl::GetFlag(FLAGS_pp);
  o.dp = absl::GetFlag(FLAGS_dp);
  o.ep = absl::GetFlag(FLAGS_ep);
  // A bad mesh is refused by every rank on its own, before the store: rank
  // 0 (the store host) refusing first would otherwise leave the others
  // saying only that the store closed.
  TANDEM_ASSIGN_OR_RETURN(const comm::RendezvousInfo info, comm::ReadRendezvousEnv());
  TANDEM_RETURN_IF_ERROR(CheckMeshShape({o.pp, o.dp, o.ep}, info.world_size));
  TANDEM_ASSIGN_OR_RETURN(comm::Bootstrap boot, comm::ConnectRendezvous(info, deadline));
  std::unique_ptr<comm::Communicator> world =
      comm::MakeStoreCommunicator(boot.store.get(), boot.info.rank, boot.info.world_size, "train/");
  o.microbatches = absl::GetFlag(FLAGS_microbatches);
  o.extra_slots = absl::GetFlag(FLAGS_extra_slots);
  o.overlap = absl::GetFlag(FLAGS_overlap);
  o.model.num_layers = std::max(2, 2 * o.pp - 2);
  o.model.num_experts = 4;
  o.model.seed = 5;
  o.model.bias_update_speed = 0;
  schedule::StoreAbortBoard board(boot.store.get(), "train/abort");
  o.abort = &board;
  TANDEM_ASSIGN_OR_RETURN(auto trainer, Trainer::Create(o, *world));
  const int replica = trainer->mesh().dp_rank, tokens = 6 * o.dp;
  uint64_t h = kFnvOffset;
  auto data = [&](int step) { return *TeacherData(o.model, step, o.microbatches, tokens, o.dp, replica); };
  auto on_step = [&](const StepStats& s) { h = Fnv1a64(&s.loss, sizeof(s.loss), h); };
  int steps = absl::GetFlag(FLAGS_steps);
  if (absl::GetFlag(FLAGS_check_gradients) && steps > 0) {
    TANDEM_RETURN_IF_ERROR(trainer->Run(1, data, on_step));
    --steps;
    TANDEM_ASSIGN_OR_RETURN(auto reference, model::Model::Create(o.model));
    TANDEM_ASSIGN_OR_RETURN(PipelineData global, TeacherData(o.model, 0, o.microbatches, tokens));
    TANDEM_RETURN_IF_ERROR(Sequential(*reference, global).status());
    std::map<std::string, model::Parameter*> want;
    for (model::Parameter* p : reference->Parameters()) want[p->name] = p;
    std::vector<float> got_all, want_all;
    for (auto [st, d] : trainer->work().copies()) {
      model::Model* m = trainer->work().model(st, d);
      for (int u = trainer->work().bounds()[st]; u < trainer->work().bounds()[st + 1]; ++u) {
        for (model::Parameter* p : m->UnitParameters(u)) {
          if (!want.count(p->name)) return absl::InternalError(absl::StrCat("no reference parameter ", p->name));
          got_all.insert(got_all.end(), p->grad.span().begin(), p->grad.span().end());
          want_all.insert(want_all.end(), want[p->name]->grad.span().begin(), want[p->name]->grad.span().end());
        }
      }
    }
    const double distance = testing::CalDiff(got_all, want_all);
    std::printf("rank %d: gradient distance %.3e over %zu values\n", boot.info.rank, distance, got_all.size());
    if (!(distance < 1e-10)) {
      return absl::InternalError(
          absl::StrFormat("gradient distance %.3e to sequential training: expected < 1e-10", distance));
    }
  }
  TANDEM_RETURN_IF_ERROR(trainer->Run(steps, data, on_step));
  for (auto [st, d] : trainer->work().copies()) {
    model::Model* m = trainer->work().model(st, d);
    for (int u = trainer->work().bounds()[st]; u < trainer->work().bounds()[st + 1]; ++u) {
      for (model::Parameter* p : m->UnitParameters(u)) h = Fnv1a64(p->value.raw(), p->value.bytes(), h);
    }
  }
  std::printf("rank %d of %d: fingerprint %016llx\n", boot.info.rank, boot.info.world_size,
              static_cast<unsigned long long>(h));
  return boot.Finish(deadline);
}

}  // namespace
}  // namespace tandem::train

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status s = tandem::train::Main();
  if (!s.ok()) {
    std::fprintf(stderr, "trainer_worker: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
