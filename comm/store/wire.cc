#include "comm/store/wire.h"

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace tandem::comm::wire {

void PutInt(int64_t v, std::string* out) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff));
}

void PutString(absl::string_view s, std::string* out) {
  const uint32_t n = static_cast<uint32_t>(s.size());
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out->append(s.data(), s.size());
}

std::string Frame(absl::string_view payload) {
  std::string out;
  const uint32_t n = static_cast<uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out.append(payload.data(), payload.size());
  return out;
}

bool Reader::Byte(uint8_t* b) {
  if (pos_ + 1 > data_.size()) return false;
  *b = static_cast<uint8_t>(data_[pos_++]);
  return true;
}

bool Reader::Int(int64_t* v) {
  if (pos_ + 8 > data_.size()) return false;
  uint64_t x = 0;
  for (int i = 0; i < 8; ++i) x |= uint64_t{static_cast<uint8_t>(data_[pos_ + i])} << (8 * i);
  pos_ += 8;
  *v = static_cast<int64_t>(x);
  return true;
}

bool Reader::String(std::string* s, int64_t max_bytes) {
  if (pos_ + 4 > data_.size()) return false;
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= uint32_t{static_cast<uint8_t>(data_[pos_ + i])} << (8 * i);
  if (n > max_bytes || pos_ + 4 + n > data_.size()) return false;
  s->assign(data_.data() + pos_ + 4, n);
  pos_ += 4 + n;
  return true;
}

absl::string_view OpName(OpCode op) {
  switch (op) {
    case OpCode::kHello:
      return "hello";
    case OpCode::kSet:
      return "set";
    case OpCode::kGet:
      return "get";
    case OpCode::kWait:
      return "wait";
    case OpCode::kAdd:
      return "add";
    case OpCode::kDelete:
      return "delete";
    case OpCode::kCheck:
      return "check";
  }
  return "?";
}

std::string EncodeRequest(const Request& r) {
  std::string out(1, static_cast<char>(r.op));
  switch (r.op) {
    case OpCode::kHello:
      PutInt(r.number, &out);
      PutInt(r.number2, &out);
      if (!r.value.empty()) PutString(r.value, &out);
      break;
    case OpCode::kSet:
      PutString(r.keys[0], &out);
      PutString(r.value, &out);
      break;
    case OpCode::kGet:
      PutString(r.keys[0], &out);
      PutInt(r.timeout_ms, &out);
      break;
    case OpCode::kWait:
      PutInt(static_cast<int64_t>(r.keys.size()), &out);
      for (const std::string& k : r.keys) PutString(k, &out);
      PutInt(r.timeout_ms, &out);
      break;
    case OpCode::kAdd:
      PutString(r.keys[0], &out);
      PutInt(r.number, &out);
      break;
    case OpCode::kDelete:
    case OpCode::kCheck:
      PutString(r.keys[0], &out);
      break;
  }
  return out;
}

absl::StatusOr<Request> DecodeRequest(absl::string_view payload) {
  Reader in(payload);
  uint8_t op = 0;
  if (!in.Byte(&op) || op < 1 || op > 7) {
    return absl::InvalidArgumentError(absl::StrFormat("store request: unknown op %d", op));
  }
  Request r;
  r.op = static_cast<OpCode>(op);
  std::string key;
  bool ok = true;
  auto read_key = [&]() {
    ok = ok && in.String(&key, kMaxStoreKeyBytes) && !key.empty();
    if (ok) r.keys.push_back(key);
  };
  switch (r.op) {
    case OpCode::kHello:
      ok = in.Int(&r.number) && in.Int(&r.number2);
      if (ok && !in.done()) ok = in.String(&r.value, kMaxJobTokenBytes);
      break;
    case OpCode::kSet:
      read_key();
      ok = ok && in.String(&r.value, kMaxStoreValueBytes);
      break;
    case OpCode::kGet:
      read_key();
      ok = ok && in.Int(&r.timeout_ms);
      break;
    case OpCode::kWait: {
      int64_t n = 0;
      ok = in.Int(&n) && n >= 0 && n <= kMaxWaitKeys;
      for (int64_t i = 0; ok && i < n; ++i) read_key();
      ok = ok && in.Int(&r.timeout_ms);
      break;
    }
    case OpCode::kAdd:
      read_key();
      ok = ok && in.Int(&r.number);
      break;
    case OpCode::kDelete:
    case OpCode::kCheck:
      read_key();
      break;
  }
  if (!ok || !in.done()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("store request: malformed fields for op %d (%d bytes)", op, payload.size()));
  }
  if (r.timeout_ms < 0) r.timeout_ms = 0;
  return r;
}

}  // namespace tandem::comm::wire
