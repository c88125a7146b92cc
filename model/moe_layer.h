// -----------------------------------------------------------------------------
// File: moe_layer.h
// -----------------------------------------------------------------------------
//
// The DeepSeek-V3 MoE layer (without its norm and residual, which the block
// in model.h adds):
//   y_t = shared(x_t) + sum_{k in top_k order} w_{t,k} * E_{e_{t,k}}(x_t)
// with the gate of router.h, routed SwiGLU experts and an optional shared
// SwiGLU expert of width num_shared_experts * moe_inter. Each forward counts
// tokens per logical expert: for the aux-loss-free bias update
// (UpdateBias(), after each step) and for a balance::LoadRecorder.
//
// Where the experts live is behind TokenExchange: with none, every expert is
// local (the single-rank reference); expert_parallel.h moves rows between EP
// ranks with comm::moe Dispatch/Combine. The routed sum for one token is
// formed per holding rank in top-k order, then summed over ranks in rank
// order (f32), so one rank reproduces the reference bit for bit.
//
// With an exchange, ForwardTask() and BackwardTask() are the same passes as
// phased tasks (comm/overlap/phased_task.h): a Step() returns before it
// would wait for an exchange, so another micro-batch can compute while it
// travels. Forward steps: router, post counts | post rows, shared expert |
// experts, post combine | the sum. Backward: post dy, shared expert |
// experts' input gradients, post combine of dx | experts' weight gradients
// (a step of their own, so an F&B's forward can post its combine before
// them) | router. Results are the same bits whether or not anything
// overlaps.
//
// Thread safety: one thread at a time; UpdateBias() and expert replacement
// need no pass in flight.
#ifndef TANDEM_MODEL_MOE_LAYER_H_
#define TANDEM_MODEL_MOE_LAYER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "balance/load_recorder.h"
#include "comm/overlap/phased_task.h"
#include "model/config.h"
#include "model/expert.h"
#include "model/router.h"
#include "model/tensor.h"
#include "model/weight_grad_store.h"

namespace tandem::model {

// TokenExchange
//
// Moves routed tokens to the experts' holders and results back. Rows are
// what the local experts see: x [R, H], for each row and top-k position the
// local expert slot (-1 when that expert is elsewhere) and its weight. Every
// exchange is posted and finished separately, so that other work can run
// while it travels (comm/overlap); ranks post them in the same order.
class TokenExchange {
 public:
  struct Rows {
    Tensor x;                         // [R, H]
    std::vector<int32_t> local_slot;  // [R, top_k]
    std::vector<float> weights;       // [R, top_k]
    std::shared_ptr<void> handle;     // the exchange's own state
  };
  // A dispatch in flight: PostRows() waits for the count exchange and posts
  // the rows; Finish() waits for them.
  class PendingDispatch {
   public:
    virtual ~PendingDispatch() = default;
    virtual absl::Status PostRows() = 0;
    virtual absl::StatusOr<Rows> Finish() = 0;
  };
  // One exchange of values in flight; Finish() waits for the result.
  class Pending {
   public:
    virtual ~Pending() = default;
    virtual absl::StatusOr<Tensor> Finish() = 0;
  };
  virtual ~TokenExchange() = default;

  // Starts sending token t to the holders of its experts idx[t, :] (logical
  // ids): posts the count exchange.
  virtual absl::StatusOr<std::unique_ptr<PendingDispatch>> StartDispatch(const Tensor& x, absl::Span<const int32_t> idx,
                                                                         const Tensor& weights) = 0;
  // Per-row values [R, W] back to their tokens, summed over holders in
  // rank order: [T, W]. `values` must stay alive until Finish().
  virtual absl::StatusOr<std::unique_ptr<Pending>> StartCombine(const Rows& rows, const Tensor& values) = 0;
  // Token values [T, H] to the rows of the dispatch: [R, H].
  virtual absl::StatusOr<std::unique_ptr<Pending>> StartDispatchAgain(const Rows& rows, const Tensor& values) = 0;
  // Sums per-expert counts over all ranks, in place (blocking).
  virtual absl::Status SumCounts(absl::Span<int64_t> counts) = 0;
};

class MoeLayer {
 public:
  struct Saved {
    Router::Saved router;
    Tensor weights;  // [T, top_k] gate weights
    SwiGlu::Saved shared;
    TokenExchange::Rows rows;  // empty x when local
    // Per local slot: rows (row, k) it served, its input and output.
    struct Work {
      std::vector<int64_t> entries;  // row * top_k + k, rows ascending
      SwiGlu::Saved saved;
      Tensor out;  // [n, H] expert outputs (unweighted)
    };
    std::vector<Work> work;
  };

  // `name` is the parameter prefix ("layers.<i>.moe"); `moe_index` the
  // layer's index among MoE layers (for the load recorder and placement).
  MoeLayer(const std::string& name, const ModelConfig& config, int moe_index);

  // MoeLayer::Init()
  //
  // Gate, shared expert and local experts from (config seed, parameter
  // name), scaled by config init_scale.
  void Init();

  // MoeLayer::Forward()
  //
  // x [T, H] -> y [T, H]; kInvalidArgument for another shape; errors of the
  // exchange pass through. Adds the routing to the token counts and the
  // recorder (when set).
  absl::StatusOr<Tensor> Forward(const Tensor& x, Saved* saved);

  // MoeLayer::Backward()
  //
  // dy [T, H] -> dx [T, H]; all weight gradients deferred into `store` (or
  // run now when nullptr).
  absl::StatusOr<Tensor> Backward(const Saved& saved, const Tensor& dy, WeightGradStore* store);

  // MoeLayer::ForwardTask(), MoeLayer::BackwardTask()
  //
  // Forward() and Backward() as phased tasks; the result is in *out when the
  // task is done. `x` / `dy` are kept by the task; `saved`, `out` and
  // `store` must outlive it.
  std::unique_ptr<comm::PhasedTask> ForwardTask(Tensor x, Saved* saved, Tensor* out, const comm::PhaseOptions& options);
  std::unique_ptr<comm::PhasedTask> BackwardTask(const Saved& saved, Tensor dy, WeightGradStore* store, Tensor* out,
                                                 const comm::PhaseOptions& options);

  // MoeLayer::UpdateBias()
  //
  // The aux-loss-free update after a step: with c_e the tokens routed to
  // expert e since the last update (summed over EP ranks) and
  // mean = sum(c) / E, b_e += speed * sign(mean - c_e). Clears the counts.
  absl::Status UpdateBias();

  // Token counts per logical expert since the last UpdateBias() (this rank).
  const std::vector<int64_t>& counts() const { return counts_; }

  // MoeLayer::CountRouted()
  //
  // What Forward() does with a selection idx [T, top_k] (logical ids): adds
  // it to the counts, the fingerprint and the recorder. A device layer that
  // routes by itself (model/cuda) calls it, so that UpdateBias() and load
  // recording work the same. Errors are the recorder's.
  absl::Status CountRouted(absl::Span<const int32_t> idx);

  void SetRecorder(balance::LoadRecorder* recorder) { recorder_ = recorder; }

  // FNV-1a hash of the selection (idx) of the latest Forward(): lets tests
  // tell whether a perturbation changed the routing.
  uint64_t routing_fingerprint() const { return routing_fingerprint_; }

  // MoeLayer::SetExperts()
  //
  // Replaces the local experts: slot j holds logical expert
  // slot_expert[j] with `experts[j]`, tokens travel through `exchange`
  // (nullptr: all local; then slot_expert must be 0..E-1). Requires that
  // no backward of this layer is pending.
  void SetExperts(std::vector<int> slot_expert, std::vector<std::unique_ptr<SwiGlu>> experts,
                  std::shared_ptr<TokenExchange> exchange);

  // MakeExpert()
  //
  // An expert with this layer's sizes and the parameter names of logical
  // expert `e`, initialised as Init() does.
  std::unique_ptr<SwiGlu> MakeExpert(int e) const;

  // The exchange set by SetExperts() (nullptr: all experts local).
  TokenExchange* exchange() const { return exchange_.get(); }

  const std::string& name() const { return name_; }
  int moe_index() const { return moe_index_; }
  const std::vector<int>& slot_expert() const { return slot_expert_; }
  SwiGlu& expert(int slot) { return *experts_[slot]; }
  Router& router() { return router_; }
  SwiGlu* shared() { return shared_.get(); }

  // Parameters of the gate and the shared expert (replicated over EP).
  std::vector<Parameter*> dense_parameters();
  // Parameters of the local experts, slot by slot (w1, w2, w3 each).
  std::vector<Parameter*> expert_parameters();

 private:
  class ForwardPass;
  class BackwardPass;

  // The local experts on rows: fills s.work and returns the weighted sums
  // per row [R, H] (top-k order).
  absl::StatusOr<Tensor> ExpertsForward(Saved& s);
  // Their backward from row gradients [R, H]: input gradients summed per
  // row [R, H] and gate-weight gradients [R, top_k]; weight gradients into
  // `store` (nullptr: now).
  absl::StatusOr<std::pair<Tensor, Tensor>> ExpertsBackward(const Saved& s, const Tensor& drows,
                                                            WeightGradStore* store);

  std::string name_;
  ModelConfig config_;
  int moe_index_;
  Router router_;
  std::unique_ptr<SwiGlu> shared_;
  std::vector<int> slot_expert_;
  std::vector<std::unique_ptr<SwiGlu>> experts_;
  std::shared_ptr<TokenExchange> exchange_;
  std::vector<int64_t> counts_;
  balance::LoadRecorder* recorder_ = nullptr;
  uint64_t routing_fingerprint_ = 0;
};

}  // namespace tandem::model

#endif  // TANDEM_MODEL_MOE_LAYER_H_
