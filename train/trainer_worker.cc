// One rank of a training job over processes (started by tools/launch):
// bootstraps over the TCP store, trains --steps steps of the reference model
// on a --pp x --ep mesh with //train's Trainer on the store backend, and
// prints "rank R of N: fingerprint HEX" where HEX is FNV-1a-64 over the raw
// bytes of every parameter its stage copies train and every step's loss, so
// that two runs can be compared bit for bit (multiprocess_overlap_test).
#include <cstdio>
#include <cstring>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "comm/store/rendezvous.h"
#include "comm/store_backend/store_communicator.h"
#include "train/data.h"
#include "train/trainer.h"

ABSL_FLAG(std::string, kind, "dualpipe", "Schedule kind.");
ABSL_FLAG(int, pp, 2, "Pipeline ranks.");
ABSL_FLAG(int, ep, 2, "Expert-parallel ranks per pipeline rank.");
ABSL_FLAG(int, microbatches, 4, "Micro-batches per step.");
ABSL_FLAG(int, steps, 2, "Training steps.");
ABSL_FLAG(int, extra_slots, 2, "Redundant expert slots per MoE layer.");
ABSL_FLAG(bool, overlap, true, "Overlap expert-parallel exchanges with compute.");

namespace tandem::train {
namespace {

uint64_t Fnv(uint64_t h, const void* data, size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

absl::Status Main() {
  const Deadline deadline = Deadline::In(absl::Minutes(2));
  TANDEM_ASSIGN_OR_RETURN(comm::Bootstrap boot, comm::BootstrapFromEnv(deadline));
  std::unique_ptr<comm::Communicator> world =
      comm::MakeStoreCommunicator(boot.store.get(), boot.info.rank, boot.info.world_size, "train/");
  TrainerOptions o;
  TANDEM_ASSIGN_OR_RETURN(o.kind, schedule::ParseKind(absl::GetFlag(FLAGS_kind)));
  o.pp = absl::GetFlag(FLAGS_pp);
  o.ep = absl::GetFlag(FLAGS_ep);
  o.microbatches = absl::GetFlag(FLAGS_microbatches);
  o.extra_slots = absl::GetFlag(FLAGS_extra_slots);
  o.overlap = absl::GetFlag(FLAGS_overlap);
  o.model.num_layers = 2;
  o.model.num_experts = 4;
  o.model.seed = 5;
  o.model.bias_update_speed = 0;
  schedule::StoreAbortBoard board(boot.store.get(), "train/abort");
  o.abort = &board;
  TANDEM_ASSIGN_OR_RETURN(auto trainer, Trainer::Create(o, *world));
  const int replica = trainer->mesh().ep_rank;
  uint64_t h = 0xcbf29ce484222325ULL;
  TANDEM_RETURN_IF_ERROR(trainer->Run(
      absl::GetFlag(FLAGS_steps),
      [&](int step) { return TeacherData(o.model, o.microbatches, 6, replica, step, 6 * o.ep); },
      [&](const StepStats& s) { h = Fnv(h, &s.loss, sizeof(s.loss)); }));
  for (auto [st, d] : trainer->work().copies()) {
    model::Model* m = trainer->work().model(st, d);
    for (int u = trainer->work().bounds()[st]; u < trainer->work().bounds()[st + 1]; ++u) {
      for (model::Parameter* p : m->UnitParameters(u)) h = Fnv(h, p->value.raw(), p->value.bytes());
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
