#include "model/weight_grad_store.h"

#include <utility>

namespace tandem::model {

void WeightGradStore::Put(Closure fn) {
  absl::MutexLock lock(&mu_);
  cache_.push_back(std::move(fn));
}

void WeightGradStore::Flush() {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(cache_));
  cache_.clear();
}

absl::Status WeightGradStore::Pop() {
  std::vector<Closure> unit;
  {
    absl::MutexLock lock(&mu_);
    if (queue_.empty()) {
      return absl::FailedPreconditionError(
          "weight grad store: pop: no queued unit");
    }
    unit = std::move(queue_.front());
    queue_.pop_front();
  }
  for (Closure& fn : unit) fn();
  return absl::OkStatus();
}

size_t WeightGradStore::size() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

size_t WeightGradStore::pending() const {
  absl::MutexLock lock(&mu_);
  return cache_.size();
}

void WeightGradStore::DropPending() {
  absl::MutexLock lock(&mu_);
  cache_.clear();
}

void WeightGradStore::Clear() {
  absl::MutexLock lock(&mu_);
  cache_.clear();
  queue_.clear();
}

}  // namespace tandem::model
