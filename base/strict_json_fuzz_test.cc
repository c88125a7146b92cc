// Fuzz-style test for json::Parse: thousands of random mutations of valid
// documents (fixed seeds, so failures reproduce). Every mutant must either be
// rejected with a positioned error (or a named duplicate key) or parse to a
// value that survives Dump -> Parse unchanged, in compact and indented form.

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "base/strict_json.h"
#include "gtest/gtest.h"

namespace tandem::json {
namespace {

const std::vector<std::string>& Seeds() {
  static const auto* const kSeeds = new std::vector<std::string>{
      R"({"weight": [[90, 132, 40], [20, 107, 104]], "num_replicas": 16,
          "weight_dtype": "int64", "ok": true, "none": null})",
      R"([0.1, -2.5e-3, 1E+20, 0, -0, 9007199254740993,
          1.7976931348623157e308])",
      R"({"s": "esc \" \\ \/ \b\f\n\r\t \u00e9 \ud83d\ude00",
          "e": "", "a": []})",
      R"([[[[{"deep": [{"x": [1, [2, [3, {"y": {}}]]]}]}]]]])",
      R"({"metrics": {"balancedness_per_layer": [0.827724, 0.805014],
          "max_gpu_load_per_layer": [156.0, 179.5]}, "k": [true, false]})",
      "\"plain\"",
      "  -12345  ",
  };
  return *kSeeds;
}

// Applies one random edit: flip, insert, delete, duplicate or truncate.
void Mutate(std::mt19937_64& rng, std::string* doc) {
  static const std::string kAlphabet = "{}[]\",:.-+eE0123456789\\u tfnrl\x01\xff";
  auto pick = [&](size_t n) {
    return static_cast<size_t>(std::uniform_int_distribution<uint64_t>(0, n == 0 ? 0 : n - 1)(rng));
  };
  const size_t pos = pick(doc->size() + 1);
  switch (pick(5)) {
    case 0:
      if (pos < doc->size()) (*doc)[pos] = static_cast<char>(rng());
      break;
    case 1:
      doc->insert(pos, 1, kAlphabet[pick(kAlphabet.size())]);
      break;
    case 2:
      if (pos < doc->size()) doc->erase(pos, 1 + pick(4));
      break;
    case 3: {
      const size_t len = pick(doc->size() - std::min(pos, doc->size()) + 1);
      doc->insert(pick(doc->size() + 1), doc->substr(pos, len));
      break;
    }
    default:
      doc->resize(pos);
  }
}

TEST(JsonFuzzTest, MutantsErrorOrRoundTrip) {
  int parsed = 0;
  int rejected = 0;
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 1500; ++i) {
      std::string doc = Seeds()[i % Seeds().size()];
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits; ++e) Mutate(rng, &doc);
      absl::StatusOr<Json> v = Parse(doc);
      if (!v.ok()) {
        ++rejected;
        ASSERT_TRUE(absl::StartsWith(v.status().message(), "line ") ||
                    absl::StartsWith(v.status().message(), "duplicate key"))
            << v.status() << " for " << doc;
        ASSERT_LE(v.status().message().size(), 300u) << v.status();
        continue;
      }
      ++parsed;
      for (int indent : {-1, 0, 3}) {
        absl::StatusOr<std::string> text = Dump(*v, indent);
        ASSERT_TRUE(text.ok()) << text.status();
        absl::StatusOr<Json> back = Parse(*text);
        ASSERT_TRUE(back.ok()) << back.status() << " for " << *text;
        ASSERT_EQ(*back, *v) << doc << " -> " << *text;
        ASSERT_EQ(Dump(*back, indent).value(), *text);
      }
    }
  }
  // Both outcomes must be exercised for the test to mean anything.
  EXPECT_GT(parsed, 500);
  EXPECT_GT(rejected, 500);
}

TEST(JsonFuzzTest, RandomBytesNeverCrash) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < 4000; ++i) {
    std::string doc(rng() % 64, '\0');
    for (char& c : doc) c = "[]{}\",:0123456789.eE-+ntfaulrsx\\"[rng() % 33];
    absl::StatusOr<Json> v = Parse(doc);
    if (v.ok()) {
      ASSERT_EQ(Parse(Dump(*v).value()).value(), *v) << doc;
    }
  }
}

}  // namespace
}  // namespace tandem::json
