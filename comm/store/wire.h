// -----------------------------------------------------------------------------
// File: wire.h
// -----------------------------------------------------------------------------
//
// The TCP store's wire format. Every message is a frame: a 4-byte
// little-endian payload length, then the payload. A request payload is an op
// byte and its fields; a response is a status byte and its fields: 0 ok, 1
// error (i64 code, str message), 2 timeout (the same, then i64 n and n x str
// keys still missing), 3 still working (empty: a heartbeat, at least every
// kHeartbeat while a GET or WAIT waits), 4 closing (str reason: the server
// closes this idle connection; the request that meets it was not read).
// Strings are a 4-byte length and bytes; integers are 8-byte little-endian.
// Frames over kMaxFrameBytes (kMaxHelloFrameBytes before HELLO), truncated
// fields, unknown ops, keys over kMaxStoreKeyBytes and more than
// kMaxWaitKeys keys are malformed.
//
//   HELLO  i64 rank, i64 world_size [, str job token]   (first request)
//   SET    str key, str value
//   GET    str key, i64 timeout_ms        -> str value
//   WAIT   i64 n, n x str key, i64 timeout_ms
//   ADD    str key, i64 delta             -> i64 value
//   DELETE str key                        -> i64 0|1
//   CHECK  str key                        -> i64 0|1

#ifndef TANDEM_COMM_STORE_WIRE_H_
#define TANDEM_COMM_STORE_WIRE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "comm/store/store.h"

namespace tandem::comm::wire {

inline constexpr int64_t kMaxFrameBytes = kMaxStoreValueBytes + kMaxStoreKeyBytes + 64;
inline constexpr int64_t kMaxHelloFrameBytes = 1024;
inline constexpr int64_t kMaxJobTokenBytes = 256;
inline constexpr int64_t kMaxWaitKeys = 1024;
inline constexpr absl::Duration kHeartbeat = absl::Seconds(1);

enum class OpCode : uint8_t { kHello = 1, kSet, kGet, kWait, kAdd, kDelete, kCheck };
enum class Reply : uint8_t { kOk = 0, kError = 1, kTimeout = 2, kWorking = 3, kClosing = 4 };

struct Request {
  OpCode op = OpCode::kHello;
  std::vector<std::string> keys;  // one, or WAIT's list
  std::string value;              // SET; HELLO's job token
  int64_t number = 0;             // HELLO rank, ADD delta
  int64_t number2 = 0;            // HELLO world size
  int64_t timeout_ms = 0;         // GET, WAIT
};

// "hello", "set", "get", "wait", "add", "delete", "check".
absl::string_view OpName(OpCode op);

// Appends integers and strings to a payload.
void PutInt(int64_t v, std::string* out);
void PutString(absl::string_view s, std::string* out);

std::string EncodeRequest(const Request& r);  // payload, without the length
absl::StatusOr<Request> DecodeRequest(absl::string_view payload);

// Reads from a payload; every call fails (returns false) past the end.
class Reader {
 public:
  explicit Reader(absl::string_view data) : data_(data) {}
  bool Int(int64_t* v);
  bool String(std::string* s, int64_t max_bytes);
  bool Byte(uint8_t* b);
  bool done() const { return pos_ == data_.size(); }

 private:
  absl::string_view data_;
  size_t pos_ = 0;
};

// Frame length prefix.
std::string Frame(absl::string_view payload);

}  // namespace tandem::comm::wire

#endif  // TANDEM_COMM_STORE_WIRE_H_
