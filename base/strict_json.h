// -----------------------------------------------------------------------------
// File: strict_json.h
// -----------------------------------------------------------------------------
//
// The one boundary between tandem and the JSON library (Debian's
// nlohmann/json): documents are nlohmann::ordered_json, so members keep the
// order they were written in, and every exception the library throws
// becomes an absl::Status here. Parse() is strict (RFC 8259, bounded size
// and depth, optionally no repeated keys) and names the line and column of
// an error with a short excerpt of the input; Dump() refuses NaN and
// infinities (JSON has none) naming where they are, instead of writing null.
//
// Example:
//   TANDEM_ASSIGN_OR_RETURN(json::Json doc, json::Parse(text));
//   json::Json out = {{"kind", "dualpipe"}, {"steps", 12}};
//   TANDEM_ASSIGN_OR_RETURN(std::string s, json::Dump(out));
#ifndef TANDEM_BASE_STRICT_JSON_H_
#define TANDEM_BASE_STRICT_JSON_H_

#include <cstddef>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace tandem::json {

using Json = nlohmann::ordered_json;

struct ParseOptions {
  bool refuse_duplicate_keys = true;     // a key twice in one object
  int max_depth = 256;                   // nested arrays and objects
  size_t max_bytes = size_t{256} << 20;  // the whole document
};

// Parse()
//
// One JSON document (whitespace around it allowed). kInvalidArgument as
// "line L column C: <what> (near '<at most 80 characters of the input>')"
// for malformed input; "duplicate key 'k' at <path>" and size or depth
// beyond `options` are refused too.
absl::StatusOr<Json> Parse(absl::string_view text, const ParseOptions& options = {});

// Dump()
//
// The document as text: compact (indent < 0) or indented. kInvalidArgument
// naming the path of the first non-finite number (e.g. "loss[3]: ...").
absl::StatusOr<std::string> Dump(const Json& value, int indent = -1);

// Excerpt()
//
// `text` cut to `max` characters ("..." marks a cut), control characters
// written as escapes (\n, \x01), for quoting input in one-line errors.
std::string Excerpt(absl::string_view text, size_t max = 80);

// Guard()
//
// Runs `f` (returning absl::Status or absl::StatusOr) and turns a JSON
// library exception into kInvalidArgument naming `what`.
template <typename F>
auto Guard(absl::string_view what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(std::string(what) + ": " + Excerpt(e.what(), 200));
  }
}

}  // namespace tandem::json

#endif  // TANDEM_BASE_STRICT_JSON_H_
