#include "base/strict_json.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tandem::json {
namespace {

// Thrown by the parser callback; caught in Parse().
struct Refused {
  std::string why;
};

// 1-based line and column (in bytes) of byte `offset` of `text`.
std::pair<int, int> LineColumn(absl::string_view text, size_t offset) {
  int line = 1, column = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return {line, column};
}

// The library's message without its prefix and without the "last read"
// token, which can be as long as the input.
std::string What(const nlohmann::json::parse_error& e) {
  std::string m = e.what();
  const size_t colon = m.find(": ", m.find("parse error"));
  if (colon != std::string::npos) m = m.substr(colon + 2);
  const size_t last = m.find("; last read");
  if (last != std::string::npos) m = m.substr(0, last);
  return Excerpt(m, 120);
}

absl::Status CheckFinite(const Json& v, const std::string& path) {
  if (v.is_number_float() && !std::isfinite(v.get<double>())) {
    return absl::InvalidArgumentError(absl::StrCat(path.empty() ? "value" : path, ": expected a finite number, got ",
                                                   v.get<double>(), " (JSON has no NaN or infinity)"));
  }
  if (v.is_object()) {
    for (const auto& [key, member] : v.items()) {
      absl::Status s = CheckFinite(member, path.empty() ? key : absl::StrCat(path, ".", key));
      if (!s.ok()) return s;
    }
  } else if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) {
      absl::Status s = CheckFinite(v[i], absl::StrCat(path, "[", i, "]"));
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string Excerpt(absl::string_view text, size_t max) {
  const bool cut = text.size() > max;
  if (cut) text = text.substr(0, max > 3 ? max - 3 : 0);
  // Control characters as escapes, so that the excerpt stays on one line.
  std::string out;
  for (char c : text) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      absl::StrAppendFormat(&out, "\\x%02x", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  return cut ? absl::StrCat(out, "...") : out;
}

absl::StatusOr<Json> Parse(absl::string_view text, const ParseOptions& options) {
  if (text.size() > options.max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("document of %d bytes: expected at most %d", text.size(), options.max_bytes));
  }
  // Keys seen per open object, and the path to it for messages.
  std::vector<std::set<std::string>> keys;
  std::vector<std::string> path;
  std::string last_key;
  auto callback = [&](int depth, nlohmann::json::parse_event_t event, Json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (depth > options.max_depth) {
      throw Refused{absl::StrFormat("nesting deeper than %d levels", options.max_depth)};
    }
    switch (event) {
      case E::object_start:
        keys.emplace_back();
        path.push_back(last_key);
        break;
      case E::object_end:
        if (!keys.empty()) keys.pop_back();
        if (!path.empty()) path.pop_back();
        break;
      case E::key: {
        last_key = parsed.get<std::string>();
        if (options.refuse_duplicate_keys && !keys.empty() && !keys.back().insert(last_key).second) {
          std::string where;
          for (const std::string& p : path) {
            if (!p.empty()) absl::StrAppend(&where, where.empty() ? "" : ".", p);
          }
          throw Refused{absl::StrCat("duplicate key '", Excerpt(last_key, 40), "' in object ",
                                     where.empty() ? "at the top" : absl::StrCat("'", Excerpt(where, 60), "'"))};
        }
        break;
      }
      case E::array_start:
        path.push_back(last_key);
        last_key.clear();
        break;
      case E::array_end:
        if (!path.empty()) path.pop_back();
        break;
      default:
        break;
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), callback);
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte is 1-based and points at the last byte read.
    const size_t at = e.byte > 0 ? e.byte - 1 : 0;
    const auto [line, column] = LineColumn(text, at);
    const size_t from = at >= 20 ? at - 20 : 0;
    return absl::InvalidArgumentError(absl::StrFormat("line %d column %d: %s (near '%s')", line, column, What(e),
                                                      Excerpt(text.substr(from, 80), 80)));
  } catch (const nlohmann::json::out_of_range& e) {
    // A number beyond a double (id 406) comes without a position: find the
    // token the message quotes.
    std::string m = e.what();
    const size_t open = m.find('\''), close = m.find('\'', open + 1);
    size_t at = 0;
    if (open != std::string::npos && close != std::string::npos) {
      const size_t found = text.find(m.substr(open + 1, std::min<size_t>(close - open - 1, 40)));
      if (found != absl::string_view::npos) at = found;
    }
    const auto [line, column] = LineColumn(text, at);
    return absl::InvalidArgumentError(absl::StrFormat("line %d column %d: number out of range (near '%s')", line,
                                                      column, Excerpt(text.substr(at, 80), 80)));
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(Excerpt(e.what(), 200));
  } catch (const Refused& r) {
    return absl::InvalidArgumentError(r.why);
  }
}

absl::StatusOr<std::string> Dump(const Json& value, int indent) {
  absl::Status finite = CheckFinite(value, "");
  if (!finite.ok()) return finite;
  return Guard("json", [&]() -> absl::StatusOr<std::string> { return value.dump(indent); });
}

}  // namespace tandem::json
