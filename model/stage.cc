#include "model/stage.h"

#include <algorithm>
#include <thread>
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

absl::StatusOr<Tensor> Stage::Forward(int mb, const Tensor& input, const Target* target) {
  const std::string where = absl::StrCat("stage [", begin_, ", ", end_, ") forward mb ", mb);
  {
    absl::MutexLock lock(&mu_);
    if (live_.count(mb) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(where, ": already has a saved forward (run its backward first)"));
    }
  }
  if (is_last() && target == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": expected a target on the last stage"));
  }
  MicroBatch m;
  Tensor h = input;
  for (int u = begin_; u < end_; ++u) {
    std::unique_ptr<UnitModel::UnitState> state;
    absl::StatusOr<Tensor> next = model_->UnitForward(u, h, &state);
    if (!next.ok()) {
      return absl::Status(next.status().code(), absl::StrCat(where, ": ", next.status().message()));
    }
    h = *std::move(next);
    m.states.push_back(std::move(state));
  }
  Tensor out = h;
  if (is_last()) {
    absl::StatusOr<LossResult> r = model_->Loss(h, *target);
    if (!r.ok()) {
      return absl::Status(r.status().code(), absl::StrCat(where, ": ", r.status().message()));
    }
    m.loss_grad = r->grad;
    out = Tensor::Zeros({1});
    out.data<float>()[0] = static_cast<float>(r->loss);
    absl::MutexLock lock(&mu_);
    losses_[mb] = r->loss;
  }
  absl::MutexLock lock(&mu_);
  live_[mb] = std::move(m);
  return out;
}

absl::StatusOr<Tensor> Stage::RunBackward(int mb, const Tensor& output_grad, WeightGradStore* store) {
  const std::string where = absl::StrCat("stage [", begin_, ", ", end_, ") backward mb ", mb);
  MicroBatch m;
  {
    absl::MutexLock lock(&mu_);
    auto it = live_.find(mb);
    if (it == live_.end()) {
      return absl::FailedPreconditionError(absl::StrCat(where, ": no saved forward (run Forward first)"));
    }
    m = std::move(it->second);
    live_.erase(it);
  }
  Tensor g = is_last() ? m.loss_grad : output_grad;
  for (int u = end_ - 1; u >= begin_; --u) {
    absl::StatusOr<Tensor> next = model_->UnitBackward(u, *m.states[u - begin_], g, store);
    m.states[u - begin_].reset();  // free this unit's activations now
    if (!next.ok()) {
      return absl::Status(next.status().code(), absl::StrCat(where, ": ", next.status().message()));
    }
    g = *std::move(next);
  }
  return g;
}

absl::StatusOr<Tensor> Stage::BackwardInput(int mb, const Tensor& output_grad) {
  absl::StatusOr<Tensor> g = RunBackward(mb, output_grad, store_);
  if (g.ok()) {
    store_->Flush();
  } else {
    store_->DropPending();  // a failed backward leaves no half unit behind
  }
  return g;
}

absl::StatusOr<Tensor> Stage::Backward(int mb, const Tensor& output_grad) {
  return RunBackward(mb, output_grad, nullptr);
}

absl::Status Stage::BackwardWeight() { return store_->Pop(); }

absl::StatusOr<Stage::ForwardBackwardResult> Stage::ForwardBackward(int mb_f, const Tensor& input, const Target* target,
                                                                    int mb_b, const Tensor& output_grad) {
  if (mb_f == mb_b) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stage [", begin_, ", ", end_, ") forward-backward: expected two micro-batches, got ", mb_f, " twice"));
  }
  absl::StatusOr<Tensor> f = absl::UnknownError("not run");
  absl::StatusOr<Tensor> b = absl::UnknownError("not run");
  if (options_.overlap_threads) {
    std::thread backward([&] { b = Backward(mb_b, output_grad); });
    f = Forward(mb_f, input, target);
    backward.join();
  } else {
    f = Forward(mb_f, input, target);
    b = Backward(mb_b, output_grad);
  }
  if (!f.ok()) return f.status();
  if (!b.ok()) return b.status();
  return ForwardBackwardResult{*std::move(f), *std::move(b)};
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
