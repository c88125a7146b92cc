#include "comm/store/store.h"

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/types/optional.h"

namespace tandem::comm {

absl::Status CheckKeyValue(absl::string_view key, int64_t value_bytes) {
  if (key.empty() || static_cast<int64_t>(key.size()) > kMaxStoreKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("store key: expected 1..%d bytes, got %d", kMaxStoreKeyBytes, key.size()));
  }
  if (value_bytes > kMaxStoreValueBytes) {
    return absl::InvalidArgumentError(absl::StrFormat("store value of '%s': expected at most %d bytes, got %d", key,
                                                      kMaxStoreValueBytes, value_bytes));
  }
  return absl::OkStatus();
}

namespace {

// The status payload of a store timeout: each missing key as "<bytes>:<key>".
constexpr absl::string_view kMissingKeysUrl = "tandem/store/missing_keys";

}  // namespace

absl::Status StoreTimeout(absl::string_view op, Deadline deadline, absl::Span<const std::string> missing) {
  return WithMissingKeys(absl::DeadlineExceededError(
                             absl::StrFormat("store %s: deadline %s exceeded; waiting for key(s) [%s]", op,
                                             absl::FormatDuration(deadline.timeout()), absl::StrJoin(missing, ", "))),
                         missing);
}

absl::Status WithMissingKeys(absl::Status timeout, absl::Span<const std::string> missing) {
  std::string payload;
  for (const std::string& k : missing) absl::StrAppend(&payload, k.size(), ":", k);
  timeout.SetPayload(kMissingKeysUrl, absl::Cord(payload));
  return timeout;
}

bool IsStoreTimeout(const absl::Status& s) {
  return absl::IsDeadlineExceeded(s) && s.GetPayload(kMissingKeysUrl).has_value();
}

std::vector<std::string> MissingKeys(const absl::Status& s) {
  std::vector<std::string> keys;
  const absl::optional<absl::Cord> payload = s.GetPayload(kMissingKeysUrl);
  if (!payload.has_value()) return keys;
  const std::string text(*payload);
  absl::string_view rest = text;
  while (!rest.empty()) {
    const size_t colon = rest.find(':');
    size_t n = 0;
    if (colon == absl::string_view::npos || !absl::SimpleAtoi(rest.substr(0, colon), &n) ||
        n > rest.size() - colon - 1) {
      return {};  // not ours
    }
    keys.emplace_back(rest.substr(colon + 1, n));
    rest.remove_prefix(colon + 1 + n);
  }
  return keys;
}

absl::Status MemoryStore::Set(absl::string_view key, absl::string_view value) {
  if (absl::Status s = CheckKeyValue(key, value.size()); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  data_[key] = std::string(value);
  return absl::OkStatus();
}

absl::StatusOr<std::string> MemoryStore::Get(absl::string_view key, Deadline deadline) {
  if (absl::Status s = CheckKeyValue(key, 0); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto present = [this, key]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return data_.contains(key); };
  if (!mu_.AwaitWithDeadline(absl::Condition(&present), deadline.time())) {
    return StoreTimeout("get", deadline, {std::string(key)});
  }
  return data_.at(key);
}

absl::Status MemoryStore::Wait(absl::Span<const std::string> keys, Deadline deadline) {
  for (const std::string& k : keys) {
    if (absl::Status s = CheckKeyValue(k, 0); !s.ok()) return s;
  }
  absl::MutexLock lock(&mu_);
  auto all = [this, keys]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const std::string& k : keys) {
      if (!data_.contains(k)) return false;
    }
    return true;
  };
  if (!mu_.AwaitWithDeadline(absl::Condition(&all), deadline.time())) {
    std::vector<std::string> missing;
    for (const std::string& k : keys) {
      if (!data_.contains(k)) missing.push_back(k);
    }
    return StoreTimeout("wait", deadline, missing);
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> MemoryStore::Add(absl::string_view key, int64_t delta) {
  if (absl::Status s = CheckKeyValue(key, 0); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto it = data_.find(key);
  int64_t x = 0;
  if (it != data_.end() && !it->second.empty() && !absl::SimpleAtoi(it->second, &x)) {
    return absl::FailedPreconditionError(
        absl::StrFormat("store add '%s': the value (%d bytes) is not an integer", key, it->second.size()));
  }
  int64_t sum = 0;
  if (__builtin_add_overflow(x, delta, &sum)) {
    return absl::OutOfRangeError(absl::StrFormat("store add '%s': %d + %d would overflow int64", key, x, delta));
  }
  data_[key] = absl::StrCat(sum);
  return sum;
}

absl::StatusOr<bool> MemoryStore::Delete(absl::string_view key) {
  if (absl::Status s = CheckKeyValue(key, 0); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  return data_.erase(key) > 0;
}

absl::StatusOr<bool> MemoryStore::Check(absl::string_view key) {
  if (absl::Status s = CheckKeyValue(key, 0); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  return data_.contains(key);
}

}  // namespace tandem::comm
