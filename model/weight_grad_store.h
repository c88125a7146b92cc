// -----------------------------------------------------------------------------
// File: weight_grad_store.h
// -----------------------------------------------------------------------------
//
// The zero-bubble W split, with the contract of DualPipe's WeightGradStore:
// a backward run in split mode Put()s its weight-gradient closures into a
// cache; Flush() moves the cache into a FIFO as ONE unit; Pop() runs the
// oldest unit. A pipeline rank holding several stages shares one store, so
// W units are popped in the order their backwards ran, across stages.
//
// Thread safety: all methods may be called from any thread; Pop() runs the
// closures outside the lock. Put() and Flush() of one backward must come
// from the thread running that backward.
//
// Example:
//   WeightGradStore store;
//   layer.Backward(saved, dy, &store);   // Put()s its dW closures
//   store.Flush();                       // one unit
//   ...
//   TANDEM_RETURN_IF_ERROR(store.Pop()); // weight gradients accumulate now
#ifndef TANDEM_MODEL_WEIGHT_GRAD_STORE_H_
#define TANDEM_MODEL_WEIGHT_GRAD_STORE_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace tandem::model {

class WeightGradStore {
 public:
  using Closure = std::function<void()>;

  // WeightGradStore::Put()
  //
  // Adds a closure to the unit being built.
  void Put(Closure fn);

  // WeightGradStore::Flush()
  //
  // Closes the unit being built and queues it, even when empty (an empty
  // unit still counts as one W, as in DualPipe).
  void Flush();

  // WeightGradStore::Pop()
  //
  // Runs the closures of the oldest unit in the order they were Put().
  // kFailedPrecondition "weight grad store: pop: no queued unit" when the
  // queue is empty.
  absl::Status Pop();

  // Number of queued units (not counting the one being built).
  size_t size() const;
  // Closures Put() since the last Flush().
  size_t pending() const;

  // WeightGradStore::DropPending()
  //
  // Drops the unit being built (after a failed backward).
  void DropPending();

  // WeightGradStore::Clear()
  //
  // Drops every queued unit and the unit being built without running them.
  void Clear();

 private:
  mutable absl::Mutex mu_;
  std::vector<Closure> cache_ ABSL_GUARDED_BY(mu_);
  std::deque<std::vector<Closure>> queue_ ABSL_GUARDED_BY(mu_);
};

// DeferOrRun()
//
// How layers hand over weight-gradient work: with a store, Put() it
// (deferred); with nullptr, run it now.
inline void DeferOrRun(WeightGradStore* store, WeightGradStore::Closure fn) {
  if (store != nullptr) {
    store->Put(std::move(fn));
  } else {
    fn();
  }
}

// DeferredWork
//
// Weight-gradient work that can fail (device GEMMs, kernel launches): Run()
// runs it now and returns its status, or Put()s it into the store. A
// deferred closure's failure is kept (the first one) for error(); pending()
// counts the closures a store still holds (not yet run, nor dropped by
// DropPending() / Clear()), so that code replacing the weights the closures
// write can refuse while any are left (CheckIdle()). Thread-safe.
class DeferredWork {
 public:
  absl::Status Run(WeightGradStore* store, std::function<absl::Status()> fn);

  // The first failure of a deferred closure, else OK.
  absl::Status error() const;
  int pending() const;

  // error(), else kFailedPrecondition "<who>: N deferred weight-gradient
  // closures not run yet" while pending() > 0, else OK.
  absl::Status CheckIdle(absl::string_view who) const;

 private:
  struct State {
    mutable absl::Mutex mu;
    absl::Status error ABSL_GUARDED_BY(mu);
    int pending ABSL_GUARDED_BY(mu) = 0;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace tandem::model

#endif  // TANDEM_MODEL_WEIGHT_GRAD_STORE_H_
