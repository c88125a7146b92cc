// -----------------------------------------------------------------------------
// File: store.h
// -----------------------------------------------------------------------------
//
// A small key-value store for bootstrap and coordination (c10d's Store): set,
// get (waits for the key), wait, add (atomic counter), delete and check.
// Implementations: MemoryStore (threads of one process) and the TCP store
// (tcp_store.h: a server in rank 0, clients everywhere). Every wait takes a
// deadline; a timeout names the keys still missing.
//
// Example:
//   TANDEM_RETURN_IF_ERROR(store.Set("nccl/id", id));
//   TANDEM_ASSIGN_OR_RETURN(std::string id, store.Get("nccl/id", deadline));

#ifndef TANDEM_COMM_STORE_STORE_H_
#define TANDEM_COMM_STORE_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "base/deadline.h"

namespace tandem::comm {

class Store {
 public:
  virtual ~Store() = default;

  virtual absl::Status Set(absl::string_view key, absl::string_view value) = 0;
  // Waits until `key` exists, then returns its value.
  virtual absl::StatusOr<std::string> Get(absl::string_view key, Deadline deadline) = 0;
  // Waits until every key exists. A timeout is StoreTimeout()'s (or carries
  // WithMissingKeys()): callers read the missing keys from it, and treat any
  // other kDeadlineExceeded as the store's own failure. Get() the same.
  virtual absl::Status Wait(absl::Span<const std::string> keys, Deadline deadline) = 0;
  // Adds `delta` to the integer at `key` (0 if absent); returns the new value.
  virtual absl::StatusOr<int64_t> Add(absl::string_view key, int64_t delta) = 0;
  // Removes `key`; false if it was absent.
  virtual absl::StatusOr<bool> Delete(absl::string_view key) = 0;
  virtual absl::StatusOr<bool> Check(absl::string_view key) = 0;
};

// Limits shared by every store, enforced by the TCP store's wire format.
inline constexpr int64_t kMaxStoreKeyBytes = 4096;
inline constexpr int64_t kMaxStoreValueBytes = int64_t{64} << 20;

// Thread-safe in-process store.
class MemoryStore : public Store {
 public:
  absl::Status Set(absl::string_view key, absl::string_view value) override;
  absl::StatusOr<std::string> Get(absl::string_view key, Deadline deadline) override;
  absl::Status Wait(absl::Span<const std::string> keys, Deadline deadline) override;
  absl::StatusOr<int64_t> Add(absl::string_view key, int64_t delta) override;
  absl::StatusOr<bool> Delete(absl::string_view key) override;
  absl::StatusOr<bool> Check(absl::string_view key) override;

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::string> data_ ABSL_GUARDED_BY(mu_);
};

// Checks a key and value against the limits (kInvalidArgument naming them).
absl::Status CheckKeyValue(absl::string_view key, int64_t value_bytes);

// "store wait: deadline 1s exceeded; waiting for key(s) [a, b]", carrying
// the missing keys (MissingKeys()).
absl::Status StoreTimeout(absl::string_view op, Deadline deadline, absl::Span<const std::string> missing);

// The keys a StoreTimeout() status names, in the order given (empty for
// any other status). The TCP store carries them from its server, so a
// caller knows what was missing even when the store is gone a moment later.
std::vector<std::string> MissingKeys(const absl::Status& s);

// Whether `s` is a store's own timeout (StoreTimeout() or WithMissingKeys()),
// as opposed to another kDeadlineExceeded, such as a TCP store's request that
// the host never answered.
bool IsStoreTimeout(const absl::Status& s);

// `timeout` carrying `missing` (what StoreTimeout() attaches; for a store
// that receives the keys with a timeout from elsewhere).
absl::Status WithMissingKeys(absl::Status timeout, absl::Span<const std::string> missing);

}  // namespace tandem::comm

#endif  // TANDEM_COMM_STORE_STORE_H_
