#include "model/stage.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/status_macros.h"
#include "model/loss.h"

namespace tandem::model {

Stage::Stage(UnitModel* model, int begin, int end, Options options)
    : model_(model), begin_(begin), end_(end), options_(options) {
  if (options_.store == nullptr) {
    own_store_ = std::make_unique<WeightGradStore>();
    store_ = own_store_.get();
  } else {
    store_ = options_.store;
  }
}

absl::StatusOr<std::vector<double>> MeasureUnitCosts(Model& model, const Tensor& input, const Target& target,
                                                     int repeats) {
  if (repeats < 1) {
    return absl::InvalidArgumentError(absl::StrCat("repeats: expected >= 1, got ", repeats));
  }
  const int n = model.num_units();
  std::vector<std::vector<double>> samples(n);
  for (int rep = 0; rep < repeats; ++rep) {
    std::vector<std::unique_ptr<Stage>> stages;
    for (int u = 0; u < n; ++u) {
      TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<Stage> s, Stage::Create(&model, u, u + 1, {}));
      stages.push_back(std::move(s));
    }
    std::vector<Tensor> inputs = {input};
    for (int u = 0; u < n; ++u) {
      const absl::Time start = absl::Now();
      TANDEM_ASSIGN_OR_RETURN(Tensor out, stages[u]->Forward(0, inputs[u], u == n - 1 ? &target : nullptr));
      samples[u].push_back(absl::ToDoubleSeconds(absl::Now() - start));
      inputs.push_back(out);
    }
    Tensor g;
    for (int u = n - 1; u >= 0; --u) {
      const absl::Time start = absl::Now();
      TANDEM_ASSIGN_OR_RETURN(g, stages[u]->Backward(0, g));
      samples[u].back() += absl::ToDoubleSeconds(absl::Now() - start);
    }
  }
  std::vector<double> costs;
  for (std::vector<double>& s : samples) {
    std::sort(s.begin(), s.end());
    costs.push_back(s[s.size() / 2]);
  }
  return costs;
}

absl::StatusOr<std::unique_ptr<Stage>> Stage::Create(UnitModel* model, int begin, int end, Options options) {
  if (model == nullptr) return absl::InvalidArgumentError("stage: model: expected non-null");
  if (begin < 0 || begin >= end || end > model->num_units()) {
    return absl::InvalidArgumentError(absl::StrCat("stage: units: expected 0 <= begin < end <= ", model->num_units(),
                                                   ", got [", begin, ", ", end, ")"));
  }
  return std::unique_ptr<Stage>(new Stage(model, begin, end, options));
}

// Forward over the units: each unit's task until it would wait (or ends), then
// the next unit; the loss on the last stage.
class Stage::ForwardPass : public comm::PhasedTask {
 public:
  ForwardPass(Stage* stage, int mb, Tensor input, const Target* target, Tensor* out)
      : st_(stage),
        mb_(mb),
        h_(std::move(input)),
        target_(target),
        out_(out),
        u_(stage->begin_),
        where_(absl::StrCat("stage [", stage->begin_, ", ", stage->end_, ") forward mb ", mb)) {}

  absl::StatusOr<bool> Step() override {
    if (u_ == st_->begin_ && unit_ == nullptr) TANDEM_RETURN_IF_ERROR(Check());
    while (u_ < st_->end_) {
      if (unit_ == nullptr) unit_ = st_->model_->UnitForwardTask(u_, h_, &state_, &next_, st_->options_.phases);
      absl::StatusOr<bool> done = unit_->Step();
      if (!done.ok()) return absl::Status(done.status().code(), absl::StrCat(where_, ": ", done.status().message()));
      if (!*done) return false;
      m_.states.push_back(std::move(state_));
      h_ = std::move(next_);
      unit_.reset();
      ++u_;
    }
    Tensor out = h_;
    if (st_->is_last()) {
      absl::StatusOr<LossResult> r = st_->model_->Loss(h_, *target_);
      if (!r.ok()) return absl::Status(r.status().code(), absl::StrCat(where_, ": ", r.status().message()));
      m_.loss_grad = r->grad;
      out = Tensor::Zeros({1});
      out.data<float>()[0] = static_cast<float>(r->loss);
      absl::MutexLock lock(&st_->mu_);
      st_->losses_[mb_] = r->loss;
    }
    absl::MutexLock lock(&st_->mu_);
    st_->live_[mb_] = std::move(m_);
    *out_ = out;
    return true;
  }

 private:
  absl::Status Check() {
    {
      absl::MutexLock lock(&st_->mu_);
      if (st_->live_.count(mb_) != 0) {
        return absl::FailedPreconditionError(
            absl::StrCat(where_, ": already has a saved forward (run its backward first)"));
      }
    }
    if (st_->is_last() && target_ == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(where_, ": expected a target on the last stage"));
    }
    return absl::OkStatus();
  }

  Stage* st_;
  const int mb_;
  Tensor h_, next_;
  const Target* target_;
  Tensor* out_;
  int u_;
  const std::string where_;
  MicroBatch m_;
  std::unique_ptr<UnitModel::UnitState> state_;
  std::unique_ptr<comm::PhasedTask> unit_;
};

// Backward over the units, last first; weight gradients now or into the
// store.
class Stage::BackwardPass : public comm::PhasedTask {
 public:
  BackwardPass(Stage* stage, int mb, Tensor output_grad, bool defer_weights, Tensor* out)
      : st_(stage),
        mb_(mb),
        g_(std::move(output_grad)),
        store_(defer_weights ? stage->store_ : nullptr),
        out_(out),
        u_(stage->end_ - 1),
        where_(absl::StrCat("stage [", stage->begin_, ", ", stage->end_, ") backward mb ", mb)) {}

  absl::StatusOr<bool> Step() override {
    if (!started_) {
      absl::MutexLock lock(&st_->mu_);
      auto it = st_->live_.find(mb_);
      if (it == st_->live_.end()) {
        return absl::FailedPreconditionError(absl::StrCat(where_, ": no saved forward (run Forward first)"));
      }
      m_ = std::move(it->second);
      st_->live_.erase(it);
      if (st_->is_last()) g_ = m_.loss_grad;
      started_ = true;
    }
    while (u_ >= st_->begin_) {
      const int i = u_ - st_->begin_;
      if (unit_ == nullptr) {
        unit_ = st_->model_->UnitBackwardTask(u_, *m_.states[i], g_, store_, &next_, st_->options_.phases);
      }
      absl::StatusOr<bool> done = unit_->Step();
      if (!done.ok()) return absl::Status(done.status().code(), absl::StrCat(where_, ": ", done.status().message()));
      if (!*done) return false;
      unit_.reset();
      m_.states[i].reset();  // free this unit's activations now
      g_ = std::move(next_);
      --u_;
    }
    *out_ = g_;
    return true;
  }

 private:
  Stage* st_;
  const int mb_;
  Tensor g_, next_;
  WeightGradStore* store_;
  Tensor* out_;
  int u_;
  const std::string where_;
  bool started_ = false;
  MicroBatch m_;
  std::unique_ptr<comm::PhasedTask> unit_;
};

std::unique_ptr<comm::PhasedTask> Stage::ForwardTask(int mb, Tensor input, const Target* target, Tensor* out) {
  return std::make_unique<ForwardPass>(this, mb, std::move(input), target, out);
}

std::unique_ptr<comm::PhasedTask> Stage::BackwardTask(int mb, Tensor output_grad, bool defer_weights, Tensor* out) {
  return std::make_unique<BackwardPass>(this, mb, std::move(output_grad), defer_weights, out);
}

absl::StatusOr<Tensor> Stage::Forward(int mb, const Tensor& input, const Target* target) {
  Tensor out;
  std::unique_ptr<comm::PhasedTask> task = ForwardTask(mb, input, target, &out);
  TANDEM_RETURN_IF_ERROR(comm::RunToEnd(*task, options_.phases.trace, 0));
  return out;
}

absl::StatusOr<Tensor> Stage::BackwardInput(int mb, const Tensor& output_grad) {
  Tensor out;
  std::unique_ptr<comm::PhasedTask> task = BackwardTask(mb, output_grad, /*defer_weights=*/true, &out);
  const absl::Status s = comm::RunToEnd(*task, options_.phases.trace, 0);
  if (!s.ok()) {
    store_->DropPending();  // a failed backward leaves no half unit behind
    return s;
  }
  store_->Flush();
  return out;
}

absl::StatusOr<Tensor> Stage::Backward(int mb, const Tensor& output_grad) {
  Tensor out;
  std::unique_ptr<comm::PhasedTask> task = BackwardTask(mb, output_grad, /*defer_weights=*/false, &out);
  TANDEM_RETURN_IF_ERROR(comm::RunToEnd(*task, options_.phases.trace, 0));
  return out;
}

absl::Status Stage::BackwardWeight() { return store_->Pop(); }

absl::StatusOr<ForwardBackwardResult> ForwardBackward(Stage& f, int mb_f, const Tensor& input, const Target* target,
                                                      Stage& b, int mb_b, const Tensor& output_grad) {
  if (&f == &b && mb_f == mb_b) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stage [", f.begin(), ", ", f.end(), ") forward-backward: expected two micro-batches, got ", mb_f, " twice"));
  }
  ForwardBackwardResult r;
  std::unique_ptr<comm::PhasedTask> forward = f.ForwardTask(mb_f, input, target, &r.output);
  std::unique_ptr<comm::PhasedTask> backward =
      b.BackwardTask(mb_b, output_grad, /*defer_weights=*/false, &r.input_grad);
  const comm::PhaseOptions& o = f.options().phases;
  if (o.overlap) {
    TANDEM_RETURN_IF_ERROR(comm::Interleave(*forward, *backward, o.trace));
  } else {
    TANDEM_RETURN_IF_ERROR(comm::RunToEnd(*forward, o.trace, 0));
    TANDEM_RETURN_IF_ERROR(comm::RunToEnd(*backward, o.trace, 1));
  }
  return r;
}

absl::StatusOr<double> Stage::loss(int mb) const {
  absl::MutexLock lock(&mu_);
  auto it = losses_.find(mb);
  if (it == losses_.end()) {
    return absl::NotFoundError(absl::StrCat("stage [", begin_, ", ", end_, "): loss of mb ", mb, ": not computed"));
  }
  return it->second;
}

int Stage::live_microbatches() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(live_.size());
}

}  // namespace tandem::model
