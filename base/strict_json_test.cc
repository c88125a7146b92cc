#include "base/strict_json.h"

#include <cmath>
#include <limits>
#include <string>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::json {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;
constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

TEST(StrictJsonTest, ParsesEveryType) {
  ASSERT_OK_AND_ASSIGN(Json v, Parse(R"({"a": null, "b": [true, false], "c": -12, "d": 2.5e3, "e": "x\ty",
                                        "f": {}})"));
  EXPECT_TRUE(v["a"].is_null());
  EXPECT_TRUE(v["b"][0].get<bool>());
  EXPECT_TRUE(v["c"].is_number_integer());
  EXPECT_EQ(v["c"].get<int64_t>(), -12);
  EXPECT_TRUE(v["d"].is_number_float());
  EXPECT_EQ(v["d"].get<double>(), 2500.0);
  EXPECT_EQ(v["e"].get<std::string>(), "x\ty");
  EXPECT_TRUE(v["f"].is_object());
}

// Members keep the order they were written in, through a parse and a dump.
TEST(StrictJsonTest, MembersKeepTheirOrder) {
  ASSERT_OK_AND_ASSIGN(Json v, Parse(R"({"z": 1, "a": 2, "m": 3})"));
  EXPECT_EQ(Dump(v).value(), R"({"z":1,"a":2,"m":3})");
  Json out = {{"zeta", 1}, {"alpha", 2}};
  out["mid"] = 3;
  EXPECT_EQ(Dump(out).value(), R"({"zeta":1,"alpha":2,"mid":3})");
}

TEST(StrictJsonTest, IntegersAndDoublesRoundTripExactly) {
  ASSERT_OK_AND_ASSIGN(Json v, Parse("[9007199254740993, -9223372036854775808, 0.1, 1e-300, 156.0]"));
  EXPECT_EQ(v[0].get<uint64_t>(), 9007199254740993u);  // beyond 2^53
  EXPECT_EQ(v[1].get<int64_t>(), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(Dump(v).value(), "[9007199254740993,-9223372036854775808,0.1,1e-300,156.0]");
  for (double d : {0.1, 1.0 / 3, 6.02214076e23, 5e-324, 0.009999999776482582}) {
    ASSERT_OK_AND_ASSIGN(Json back, Parse(Dump(Json(d)).value()));
    EXPECT_EQ(back.get<double>(), d);
  }
}

// JSON has no NaN or infinity: Dump() refuses them naming where they are,
// rather than writing null.
TEST(StrictJsonTest, NonFiniteNumbersAreRefusedNamingTheirKey) {
  Json v = {{"run", {{"loss", {1.0, std::nan(""), 2.0}}}}};
  EXPECT_THAT(Dump(v), StatusIs(kInvalid, HasSubstr("run.loss[1]: expected a finite number")));
  EXPECT_THAT(Dump(Json{{"x", std::numeric_limits<double>::infinity()}}), StatusIs(kInvalid, HasSubstr("x: ")));
  EXPECT_OK(Dump(Json{{"x", 1e308}}));  // must-fail twin: finite passes
}

TEST(StrictJsonTest, ErrorsNameLineAndColumn) {
  EXPECT_THAT(Parse("{\n  \"a\": tru\n}"), StatusIs(kInvalid, HasSubstr("line 2 column")));
  EXPECT_THAT(Parse("[1, 2"), StatusIs(kInvalid, HasSubstr("line 1 column")));
  EXPECT_THAT(Parse("[1] x"), StatusIs(kInvalid, HasSubstr("line 1 column 5")));
  EXPECT_THAT(Parse(""), StatusIs(kInvalid, HasSubstr("line 1 column 1")));
  for (const char* bad : {"{", "[1,]", "{\"a\" 1}", "01", "1.", "\"\\x\"", "\"a\nb\"", "nul", "[1 2]"}) {
    EXPECT_THAT(Parse(bad), StatusIs(kInvalid, HasSubstr("line 1 column"))) << bad;
  }
}

// A huge malformed token is quoted in at most ~80 characters, not echoed.
TEST(StrictJsonTest, ErrorsQuoteAShortExcerpt) {
  const std::string digits(1000000, '7');
  for (const std::string& bad : {"[" + digits + "x]", "[\"" + digits, "{\"k\": 1" + std::string(5000, ' ') + "x"}) {
    absl::StatusOr<Json> v = Parse(bad);
    ASSERT_FALSE(v.ok());
    EXPECT_LE(v.status().message().size(), 300u) << v.status().message().substr(0, 400);
    EXPECT_THAT(v.status(), StatusIs(kInvalid, HasSubstr("near '")));
  }
  EXPECT_EQ(Excerpt("short"), "short");
  EXPECT_EQ(Excerpt(std::string(100, 'a')).size(), 80u);
  EXPECT_EQ(Excerpt("a\nb\x01"), "a\\nb\\x01");  // stays on one line
}

TEST(StrictJsonTest, DuplicateKeysAreRefusedUnlessAllowed) {
  EXPECT_THAT(Parse(R"({"a": 1, "b": {"c": 1, "c": 2}})"),
              StatusIs(kInvalid, HasSubstr("duplicate key 'c' in object 'b'")));
  EXPECT_THAT(Parse(R"({"a": 1, "a": 2})"), StatusIs(kInvalid, HasSubstr("duplicate key 'a' in object at the top")));
  // The same key in different objects is fine.
  EXPECT_OK(Parse(R"([{"a": 1}, {"a": 2}])"));
  ParseOptions lax;
  lax.refuse_duplicate_keys = false;
  EXPECT_OK(Parse(R"({"a": 1, "a": 2})", lax));
}

TEST(StrictJsonTest, EnforcesLimits) {
  const std::string deep = std::string(300, '[') + std::string(300, ']');
  EXPECT_THAT(Parse(deep), StatusIs(kInvalid, HasSubstr("nesting deeper")));
  ParseOptions options;
  options.max_depth = 400;
  EXPECT_OK(Parse(deep, options));
  options.max_bytes = 4;
  EXPECT_THAT(Parse("[1,2,3,4,5,6]", options), StatusIs(kInvalid, HasSubstr("expected at most 4")));
}

// Library exceptions (a wrong type, a missing key) become a status at the
// boundary.
TEST(StrictJsonTest, LibraryExceptionsBecomeStatus) {
  const Json v = {{"n", "not a number"}};
  absl::StatusOr<int> n = Guard("config", [&]() -> absl::StatusOr<int> { return v.at("n").get<int>(); });
  EXPECT_THAT(n, StatusIs(kInvalid, HasSubstr("config: ")));
  absl::Status missing = Guard("config", [&]() -> absl::Status {
    (void)v.at("missing");
    return absl::OkStatus();
  });
  EXPECT_THAT(missing, StatusIs(kInvalid, HasSubstr("missing")));
}

}  // namespace
}  // namespace tandem::json
