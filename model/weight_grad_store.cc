#include "model/weight_grad_store.h"

#include <utility>

#include "absl/strings/str_cat.h"

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
      return absl::FailedPreconditionError("weight grad store: pop: no queued unit");
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

absl::Status DeferredWork::Run(WeightGradStore* store, std::function<absl::Status()> fn) {
  if (store == nullptr) return fn();
  // Held by every copy of the closure: the count drops when the store has
  // run or dropped it.
  struct Ticket {
    explicit Ticket(std::shared_ptr<State> s) : state(std::move(s)) {
      absl::MutexLock lock(&state->mu);
      ++state->pending;
    }
    ~Ticket() {
      absl::MutexLock lock(&state->mu);
      --state->pending;
    }
    std::shared_ptr<State> state;
  };
  store->Put([fn = std::move(fn), ticket = std::make_shared<Ticket>(state_)] {
    const absl::Status st = fn();
    absl::MutexLock lock(&ticket->state->mu);
    if (ticket->state->error.ok()) ticket->state->error = st;
  });
  return absl::OkStatus();
}

absl::Status DeferredWork::error() const {
  absl::MutexLock lock(&state_->mu);
  return state_->error;
}

int DeferredWork::pending() const {
  absl::MutexLock lock(&state_->mu);
  return state_->pending;
}

absl::Status DeferredWork::CheckIdle(absl::string_view who) const {
  absl::MutexLock lock(&state_->mu);
  if (!state_->error.ok()) return state_->error;
  if (state_->pending > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(who, ": ", state_->pending, " deferred weight-gradient closures not run yet"));
  }
  return absl::OkStatus();
}

}  // namespace tandem::model
