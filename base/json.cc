#include "base/json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/charconv.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tandem::json {
namespace {

const std::string& EmptyString() {
  static const std::string* const kEmpty = new std::string();
  return *kEmpty;
}

}  // namespace

bool Value::is_int64() const {
  const Number* n = std::get_if<Number>(&data_);
  return n != nullptr && n->exact_int;
}

bool Value::as_bool() const {
  const bool* b = std::get_if<bool>(&data_);
  return b != nullptr && *b;
}

double Value::as_double() const {
  const Number* n = std::get_if<Number>(&data_);
  return n == nullptr ? 0.0 : n->d;
}

int64_t Value::as_int64() const {
  const Number* n = std::get_if<Number>(&data_);
  return n != nullptr && n->exact_int ? n->i : 0;
}

const std::string& Value::as_string() const {
  const std::string* s = std::get_if<std::string>(&data_);
  return s == nullptr ? EmptyString() : *s;
}

const Array& Value::as_array() const {
  static const Array* const kEmpty = new Array();
  const Array* a = std::get_if<Array>(&data_);
  return a == nullptr ? *kEmpty : *a;
}

const Object& Value::as_object() const {
  static const Object* const kEmpty = new Object();
  const Object* o = std::get_if<Object>(&data_);
  return o == nullptr ? *kEmpty : *o;
}

Array& Value::mutable_array() {
  if (!is_array()) data_ = Array();
  return std::get<Array>(data_);
}

Object& Value::mutable_object() {
  if (!is_object()) data_ = Object();
  return std::get<Object>(data_);
}

const Value* Value::Find(absl::string_view key) const {
  for (const Member& m : as_object()) {
    if (m.key == key) return &m.value;
  }
  return nullptr;
}

Value& Value::Set(absl::string_view key, Value value) {
  Object& object = mutable_object();
  for (Member& m : object) {
    if (m.key == key) return m.value = std::move(value);
  }
  object.push_back(Member{std::string(key), std::move(value)});
  return object.back().value;
}

Value& Value::Append(Value value) {
  Array& array = mutable_array();
  array.push_back(std::move(value));
  return array.back();
}

bool operator==(const Value& a, const Value& b) {
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case Type::kNull:
      return true;
    case Type::kBool:
      return a.as_bool() == b.as_bool();
    case Type::kNumber:
      if (a.is_int64() && b.is_int64()) return a.as_int64() == b.as_int64();
      return a.as_double() == b.as_double();
    case Type::kString:
      return a.as_string() == b.as_string();
    case Type::kArray:
      return a.as_array() == b.as_array();
    case Type::kObject: {
      const Object& x = a.as_object();
      const Object& y = b.as_object();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (x[i].key != y[i].key || x[i].value != y[i].value) return false;
      }
      return true;
    }
  }
  return false;
}

// Recursive-descent parser over the whole text; `pos_` is a byte offset.
class Parser {
 public:
  Parser(absl::string_view text, const ParseOptions& options)
      : text_(text), options_(options) {}

  absl::StatusOr<Value> ParseDocument() {
    if (text_.size() > options_.max_bytes) {
      pos_ = 0;
      return Error(absl::StrCat("document of ", text_.size(),
                                " bytes exceeds the limit of ",
                                options_.max_bytes));
    }
    Value value;
    absl::Status s = ParseValue(0, &value);
    if (!s.ok()) return s;
    SkipWhitespace();
    if (pos_ != text_.size()) return Error("unexpected text after the value");
    return value;
  }

 private:
  absl::Status Error(absl::string_view what) const {
    int line = 1;
    int column = 1;
    for (size_t i = 0; i < pos_ && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return absl::InvalidArgumentError(
        absl::StrCat("line ", line, " column ", column, ": ", what));
  }

  absl::Status Unexpected() const {
    if (pos_ >= text_.size()) return Error("unexpected end of input");
    const unsigned char c = text_[pos_];
    if (c >= 0x20 && c < 0x7f) {
      return Error(absl::StrCat("unexpected character '",
                                absl::string_view(&text_[pos_], 1), "'"));
    }
    return Error(
        absl::StrCat("unexpected byte 0x",
                     absl::Hex(static_cast<unsigned>(c), absl::kZeroPad2)));
  }

  void SkipWhitespace() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' ||
            text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool Consume(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  bool ConsumeWord(absl::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  absl::Status ParseValue(int depth, Value* out) {
    SkipWhitespace();
    if (pos_ >= text_.size()) return Unexpected();
    switch (text_[pos_]) {
      case '{':
      case '[':
        if (depth >= options_.max_depth) {
          return Error(absl::StrCat("nesting deeper than ", options_.max_depth,
                                    " levels"));
        }
        return text_[pos_] == '{' ? ParseObject(depth + 1, out)
                                  : ParseArray(depth + 1, out);
      case '"': {
        std::string s;
        absl::Status status = ParseString(&s);
        *out = Value(std::move(s));
        return status;
      }
      case 't':
        if (ConsumeWord("true")) return *out = Value(true), absl::OkStatus();
        return Unexpected();
      case 'f':
        if (ConsumeWord("false")) return *out = Value(false), absl::OkStatus();
        return Unexpected();
      case 'n':
        if (ConsumeWord("null")) return *out = Value(), absl::OkStatus();
        return Unexpected();
      default:
        return ParseNumber(out);
    }
  }

  absl::Status ParseArray(int depth, Value* out) {
    ++pos_;  // '['
    Array& array = out->mutable_array();
    SkipWhitespace();
    if (Consume(']')) return absl::OkStatus();
    while (true) {
      array.emplace_back();
      absl::Status s = ParseValue(depth, &array.back());
      if (!s.ok()) return s;
      SkipWhitespace();
      if (Consume(']')) return absl::OkStatus();
      if (!Consume(',')) return Unexpected();
    }
  }

  absl::Status ParseObject(int depth, Value* out) {
    ++pos_;  // '{'
    Object& object = out->mutable_object();
    SkipWhitespace();
    if (Consume('}')) return absl::OkStatus();
    while (true) {
      SkipWhitespace();
      if (pos_ >= text_.size() || text_[pos_] != '"') return Unexpected();
      object.emplace_back();
      absl::Status s = ParseString(&object.back().key);
      if (!s.ok()) return s;
      SkipWhitespace();
      if (!Consume(':')) return Unexpected();
      s = ParseValue(depth, &object.back().value);
      if (!s.ok()) return s;
      SkipWhitespace();
      if (Consume('}')) return absl::OkStatus();
      if (!Consume(',')) return Unexpected();
    }
  }

  // Reads 4 hex digits after "\u" into `code`.
  bool ParseHex4(uint32_t* code) {
    if (text_.size() - pos_ < 4) return false;
    *code = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[pos_ + i];
      uint32_t digit;
      if (c >= '0' && c <= '9') {
        digit = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        digit = c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        digit = c - 'A' + 10;
      } else {
        return false;
      }
      *code = *code * 16 + digit;
    }
    pos_ += 4;
    return true;
  }

  static void AppendUtf8(uint32_t code, std::string* out) {
    if (code < 0x80) {
      out->push_back(static_cast<char>(code));
    } else if (code < 0x800) {
      out->push_back(static_cast<char>(0xc0 | (code >> 6)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3f)));
    } else if (code < 0x10000) {
      out->push_back(static_cast<char>(0xe0 | (code >> 12)));
      out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3f)));
    } else {
      out->push_back(static_cast<char>(0xf0 | (code >> 18)));
      out->push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3f)));
    }
  }

  absl::Status ParseUnicodeEscape(std::string* out) {
    const size_t start = pos_ - 2;  // at the backslash
    uint32_t code;
    if (!ParseHex4(&code)) return Error("invalid \\u escape");
    if (code >= 0xdc00 && code <= 0xdfff) {
      pos_ = start;
      return Error("unpaired low surrogate in \\u escape");
    }
    if (code >= 0xd800 && code <= 0xdbff) {
      uint32_t low;
      if (!ConsumeWord("\\u") || !ParseHex4(&low) || low < 0xdc00 ||
          low > 0xdfff) {
        pos_ = start;
        return Error("unpaired high surrogate in \\u escape");
      }
      code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
    }
    AppendUtf8(code, out);
    return absl::OkStatus();
  }

  absl::Status ParseString(std::string* out) {
    ++pos_;  // opening quote
    while (true) {
      if (pos_ >= text_.size()) return Error("unterminated string");
      const char c = text_[pos_];
      if (c == '"') {
        ++pos_;
        return absl::OkStatus();
      }
      if (static_cast<unsigned char>(c) < 0x20) {
        return Error("raw control character in string (use an escape)");
      }
      ++pos_;
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= text_.size()) return Error("unterminated string");
      const char e = text_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          absl::Status s = ParseUnicodeEscape(out);
          if (!s.ok()) return s;
          break;
        }
        default:
          pos_ -= 2;
          return Error("invalid escape in string");
      }
    }
  }

  size_t SkipDigits() {
    const size_t start = pos_;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      ++pos_;
    }
    return pos_ - start;
  }

  absl::Status ParseNumber(Value* out) {
    const size_t start = pos_;
    Consume('-');
    if (pos_ >= text_.size() || text_[pos_] < '0' || text_[pos_] > '9') {
      pos_ = start;
      return Unexpected();
    }
    const bool leading_zero = text_[pos_] == '0';
    const size_t int_digits = SkipDigits();
    if (leading_zero && int_digits > 1) {
      pos_ = start;
      return Error("invalid number (leading zero)");
    }
    bool integer = true;
    if (Consume('.')) {
      integer = false;
      if (SkipDigits() == 0) return Error("invalid number (digit expected)");
    }
    if (Consume('e') || Consume('E')) {
      integer = false;
      if (!Consume('+')) Consume('-');
      if (SkipDigits() == 0) return Error("invalid number (digit expected)");
    }
    const absl::string_view literal = text_.substr(start, pos_ - start);
    Value::Number number{0.0, 0, false};
    const absl::from_chars_result r = absl::from_chars(
        literal.data(), literal.data() + literal.size(), number.d);
    if (r.ec != std::errc()) {
      pos_ = start;
      return Error(absl::StrCat("number out of range: ", literal));
    }
    if (integer) number.exact_int = absl::SimpleAtoi(literal, &number.i);
    out->data_ = number;
    return absl::OkStatus();
  }

  absl::string_view text_;
  ParseOptions options_;
  size_t pos_ = 0;
};

absl::StatusOr<Value> Parse(absl::string_view text,
                            const ParseOptions& options) {
  return Parser(text, options).ParseDocument();
}

namespace {

void AppendDouble(double d, std::string* out) {
  if (!std::isfinite(d)) {
    out->append("null");
    return;
  }
  char buf[32];
  for (int precision = 15; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, d);
    double back = 0;
    const absl::from_chars_result r =
        absl::from_chars(buf, buf + std::char_traits<char>::length(buf), back);
    if (r.ec == std::errc() && back == d) break;
  }
  out->append(buf);
}

void AppendString(const std::string& s, std::string* out) {
  out->push_back('"');
  for (const char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppend(out, "\\u00",
                          absl::Hex(static_cast<unsigned>(c), absl::kZeroPad2));
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

bool IsScalar(const Value& v) { return !v.is_array() && !v.is_object(); }

void AppendValue(const Value& v, int indent, int depth, std::string* out) {
  auto newline = [&](int level) {
    if (indent < 0) return;
    out->push_back('\n');
    out->append(static_cast<size_t>(indent) * level, ' ');
  };
  switch (v.type()) {
    case Type::kNull:
      out->append("null");
      return;
    case Type::kBool:
      out->append(v.as_bool() ? "true" : "false");
      return;
    case Type::kNumber:
      if (v.is_int64()) {
        absl::StrAppend(out, v.as_int64());
      } else {
        AppendDouble(v.as_double(), out);
      }
      return;
    case Type::kString:
      AppendString(v.as_string(), out);
      return;
    case Type::kArray: {
      const Array& a = v.as_array();
      bool one_line = true;
      for (const Value& e : a) one_line = one_line && IsScalar(e);
      one_line = one_line || indent < 0;
      out->push_back('[');
      for (size_t i = 0; i < a.size(); ++i) {
        if (i > 0) out->append(indent >= 0 && one_line ? ", " : ",");
        if (!one_line) newline(depth + 1);
        AppendValue(a[i], indent, depth + 1, out);
      }
      if (!one_line && !a.empty()) newline(depth);
      out->push_back(']');
      return;
    }
    case Type::kObject: {
      const Object& o = v.as_object();
      out->push_back('{');
      for (size_t i = 0; i < o.size(); ++i) {
        if (i > 0) out->push_back(',');
        newline(depth + 1);
        AppendString(o[i].key, out);
        out->append(indent >= 0 ? ": " : ":");
        AppendValue(o[i].value, indent, depth + 1, out);
      }
      if (!o.empty()) newline(depth);
      out->push_back('}');
      return;
    }
  }
}

}  // namespace

std::string Serialize(const Value& value, int indent) {
  std::string out;
  AppendValue(value, indent, 0, &out);
  return out;
}

}  // namespace tandem::json
