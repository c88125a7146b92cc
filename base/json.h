// -----------------------------------------------------------------------------
// File: json.h
// -----------------------------------------------------------------------------
//
// A small JSON library: a `Value` tree, a strict parser (RFC 8259) that never
// crashes on bad input, and a serializer that round-trips doubles exactly.
// Objects keep their members in insertion order; numbers keep the exact
// int64 of an integer literal next to its double.
//
// Example:
//   TANDEM_ASSIGN_OR_RETURN(json::Value doc, json::Parse(text));
//   const json::Value* n = doc.Find("num_gpus");
//   if (n == nullptr || !n->is_int64()) return absl::InvalidArgumentError(..);
//
//   json::Value out = json::Object{{"name", "dualpipe"}, {"steps", 12}};
//   out.Set("loads", json::Array{1.5, 2, "x", nullptr});
//   std::string text = json::Serialize(out);      // compact
//   std::string pretty = json::Serialize(out, 2);  // 2-space indent

#ifndef TANDEM_BASE_JSON_H_
#define TANDEM_BASE_JSON_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tandem::json {

class Value;
struct Member;
using Array = std::vector<Value>;
using Object = std::vector<Member>;  // insertion order; keys may repeat

enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

// Value
//
// One JSON value. Accessors of the wrong type do not fail: they return false,
// 0 or an empty string, array or object, so callers check `is_*()` first when
// the type matters. Thread-compatible.
class Value {
 public:
  Value() = default;  // null
  Value(std::nullptr_t) {}
  Value(bool b) : data_(b) {}
  // Any integer type (except bool) gives an exact int64 number.
  template <typename T,
            typename std::enable_if_t<
                std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  Value(T v)
      : data_(Number{static_cast<double>(v), static_cast<int64_t>(v), true}) {}
  Value(double d) : data_(Number{d, 0, false}) {}
  Value(const char* s) : data_(std::string(s)) {}
  Value(absl::string_view s) : data_(std::string(s)) {}
  Value(std::string s) : data_(std::move(s)) {}
  Value(Array a) : data_(std::move(a)) {}
  Value(Object o) : data_(std::move(o)) {}

  Type type() const { return static_cast<Type>(data_.index()); }
  bool is_null() const { return type() == Type::kNull; }
  bool is_bool() const { return type() == Type::kBool; }
  bool is_number() const { return type() == Type::kNumber; }
  // A number that holds an exact int64: an integer literal in range, or a
  // value built from an integer.
  bool is_int64() const;
  bool is_string() const { return type() == Type::kString; }
  bool is_array() const { return type() == Type::kArray; }
  bool is_object() const { return type() == Type::kObject; }

  bool as_bool() const;
  // The number as a double (integer literals beyond 2^53 are rounded).
  double as_double() const;
  // The exact integer when is_int64(), else 0.
  int64_t as_int64() const;
  const std::string& as_string() const;
  const Array& as_array() const;
  const Object& as_object() const;

  // Value::mutable_array(), Value::mutable_object()
  //
  // The array (object) to append to; a value of another type is replaced by
  // an empty array (object) first.
  Array& mutable_array();
  Object& mutable_object();

  // Value::Find()
  //
  // The value of the first member named `key`, or nullptr when there is none
  // or this is not an object.
  const Value* Find(absl::string_view key) const;

  // Value::Set()
  //
  // Replaces the first member named `key` or appends a new one (turning a
  // non-object into an empty object first). Returns the stored value.
  Value& Set(absl::string_view key, Value value);

  // Value::Append()
  //
  // Appends to an array (turning a non-array into an empty array first).
  // Returns the stored value.
  Value& Append(Value value);

  // Deep equality. Numbers compare by int64 when both hold one, else by
  // double (so 2 == 2.0); object members compare in order.
  friend bool operator==(const Value& a, const Value& b);
  friend bool operator!=(const Value& a, const Value& b) { return !(a == b); }

 private:
  struct Number {
    double d;
    int64_t i;
    bool exact_int;
  };
  friend class Parser;
  std::variant<std::monostate, bool, Number, std::string, Array, Object> data_;
};

struct Member {
  std::string key;
  Value value;
};

// ParseOptions
//
// Limits that keep hostile input from exhausting the stack or memory.
struct ParseOptions {
  int max_depth = 256;                   // nested arrays/objects
  size_t max_bytes = size_t{256} << 20;  // whole document
};

// Parse()
//
// Parses one JSON document (surrounding whitespace allowed). On malformed
// input, or input beyond `options`' limits, returns kInvalidArgument with a
// message `line L column C: <what>` (1-based; columns count bytes). Strings
// must not hold raw control characters; \u escapes become UTF-8 and must pair
// surrogates; other bytes pass through unchecked. Numbers a double cannot
// hold (magnitude above ~1.8e308, or nonzero below ~4.9e-324) are errors.
absl::StatusOr<Value> Parse(absl::string_view text,
                            const ParseOptions& options = {});

// Serialize()
//
// Writes `value` as JSON text. indent < 0 gives compact output; indent >= 0
// puts each member and each element of a non-scalar array on its own line,
// indented by `indent` spaces per level (arrays of scalars stay on one line).
// Doubles use the shortest decimal form that parses back to the same bits;
// NaN and infinities, which JSON cannot hold, are written as null.
std::string Serialize(const Value& value, int indent = -1);

}  // namespace tandem::json

#endif  // TANDEM_BASE_JSON_H_
