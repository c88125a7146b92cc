#include "base/json.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::json {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

TEST(JsonTest, ParsesEveryType) {
  ASSERT_OK_AND_ASSIGN(Value v,
                       Parse(R"( {"a": null, "b": [true, false], "c": -12,
                          "d": 2.5e3, "e": "x\ty", "f": {}} )"));
  ASSERT_TRUE(v.is_object());
  ASSERT_EQ(v.as_object().size(), 6u);
  EXPECT_TRUE(v.Find("a")->is_null());
  EXPECT_TRUE(v.Find("b")->as_array()[0].as_bool());
  EXPECT_FALSE(v.Find("b")->as_array()[1].as_bool());
  EXPECT_TRUE(v.Find("c")->is_int64());
  EXPECT_EQ(v.Find("c")->as_int64(), -12);
  EXPECT_FALSE(v.Find("d")->is_int64());
  EXPECT_EQ(v.Find("d")->as_double(), 2500.0);
  EXPECT_EQ(v.Find("e")->as_string(), "x\ty");
  EXPECT_TRUE(v.Find("f")->is_object());
  EXPECT_EQ(v.Find("missing"), nullptr);
}

TEST(JsonTest, ObjectsKeepInsertionOrder) {
  ASSERT_OK_AND_ASSIGN(Value v, Parse(R"({"z": 1, "a": 2, "m": 3})"));
  EXPECT_EQ(Serialize(v), R"({"z":1,"a":2,"m":3})");
}

TEST(JsonTest, IntegersKeepExactInt64) {
  ASSERT_OK_AND_ASSIGN(Value v, Parse("[9007199254740993, -9223372036854775808,"
                                      " 9223372036854775808, 1.0]"));
  const Array& a = v.as_array();
  EXPECT_EQ(a[0].as_int64(), 9007199254740993);  // beyond 2^53
  EXPECT_EQ(a[1].as_int64(), std::numeric_limits<int64_t>::min());
  EXPECT_FALSE(a[2].is_int64());  // does not fit: double only
  EXPECT_EQ(a[2].as_double(), 9223372036854775808.0);
  EXPECT_FALSE(a[3].is_int64());  // not an integer literal
  EXPECT_EQ(Serialize(v),
            "[9007199254740993,-9223372036854775808,9.223372036854776e+18,1]");
}

TEST(JsonTest, DoublesRoundTripExactly) {
  for (double d : {0.1, 1.0 / 3.0, 1e-300, 5e-324, 1.7976931348623157e308, -2.5,
                   123456789.123456789, 0.30000000000000004}) {
    const std::string text = Serialize(Value(d));
    ASSERT_OK_AND_ASSIGN(Value back, Parse(text));
    EXPECT_EQ(back.as_double(), d) << text;
  }
  EXPECT_EQ(Serialize(Value(0.1)), "0.1");
  EXPECT_EQ(Serialize(Value(156.0)), "156");
}

TEST(JsonTest, NonFiniteSerializesAsNull) {
  EXPECT_EQ(Serialize(Value(std::numeric_limits<double>::infinity())), "null");
  EXPECT_EQ(Serialize(Value(std::nan(""))), "null");
}

TEST(JsonTest, StringEscapesRoundTrip) {
  ASSERT_OK_AND_ASSIGN(
      Value v, Parse(R"("q\" b\\ s\/ \b\f\n\r\t \u00e9 \ud83d\ude00")"));
  EXPECT_EQ(v.as_string(), "q\" b\\ s/ \b\f\n\r\t \xc3\xa9 \xf0\x9f\x98\x80");
  const std::string text = Serialize(Value(std::string("a\x01z\"")));
  EXPECT_EQ(text, R"("a\u0001z\"")");
  ASSERT_OK_AND_ASSIGN(Value back, Parse(Serialize(v)));
  EXPECT_EQ(back, v);
}

TEST(JsonTest, ErrorsNameLineAndColumn) {
  EXPECT_THAT(Parse("{\n  \"a\": tru\n}"),
              StatusIs(kInvalid, HasSubstr("line 2 column 8: unexpected "
                                           "character 't'")));
  EXPECT_THAT(Parse("[1, 2"),
              StatusIs(kInvalid, HasSubstr("line 1 column 6: unexpected end")));
  EXPECT_THAT(Parse("[1] x"), StatusIs(kInvalid, HasSubstr("after the value")));
  EXPECT_THAT(Parse(""), StatusIs(kInvalid, HasSubstr("line 1 column 1")));
}

TEST(JsonTest, RejectsMalformedInput) {
  for (const char* bad :
       {"[1,]",    "{\"a\" 1}",   "{\"a\":1,}",  "01",          "1.",
        "-",       "1e",          ".5",          "+1",          "\"abc",
        "\"\\x\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\u12g4\"", "\"a\nb\"",
        "nul",     "[1 2]",       "{1:2}",       "1e400",       "-1e999",
        "1e-400",  "\xff"}) {
    EXPECT_THAT(Parse(bad), StatusIs(kInvalid, HasSubstr("line 1 column")))
        << bad;
  }
}

TEST(JsonTest, EnforcesLimits) {
  std::string deep(300, '[');
  deep += std::string(300, ']');
  EXPECT_THAT(Parse(deep), StatusIs(kInvalid, HasSubstr("nesting deeper")));
  ParseOptions options;
  options.max_depth = 400;
  EXPECT_OK(Parse(deep, options));
  options.max_bytes = 10;
  EXPECT_THAT(Parse("[1,2,3,4,5,6]", options),
              StatusIs(kInvalid, HasSubstr("exceeds the limit of 10")));
}

TEST(JsonTest, BuildsValuesForOutput) {
  Value out = Object{{"name", "eplb"}, {"layers", 2}};
  out.Set("loads", Array{1.5, 2, "x", nullptr, true});
  out.Set("layers", 3);  // replaces in place
  Value& nested = out.Set("nested", Value());
  nested.Append(Array{1, 2});
  nested.Append(Object{{"k", -1}});
  EXPECT_EQ(Serialize(out),
            R"({"name":"eplb","layers":3,"loads":[1.5,2,"x",null,true],)"
            R"("nested":[[1,2],{"k":-1}]})");
  EXPECT_EQ(Serialize(out, 2), R"({
  "name": "eplb",
  "layers": 3,
  "loads": [1.5, 2, "x", null, true],
  "nested": [
    [1, 2],
    {
      "k": -1
    }
  ]
})");
  ASSERT_OK_AND_ASSIGN(Value back, Parse(Serialize(out, 2)));
  EXPECT_EQ(back, out);
}

TEST(JsonTest, WrongTypeAccessorsReturnEmptyValues) {
  const Value n(7);
  EXPECT_FALSE(n.as_bool());
  EXPECT_EQ(n.as_string(), "");
  EXPECT_TRUE(n.as_array().empty());
  EXPECT_TRUE(n.as_object().empty());
  EXPECT_EQ(n.Find("a"), nullptr);
  EXPECT_EQ(Value("s").as_double(), 0.0);
  EXPECT_EQ(Value(2.5).as_int64(), 0);
}

TEST(JsonTest, EqualityComparesNumbersByValue) {
  EXPECT_EQ(Value(2), Value(2.0));
  EXPECT_NE(Value(2), Value(3));
  EXPECT_NE(Value(2), Value("2"));
  EXPECT_NE(Value(Object{{"a", 1}, {"b", 2}}),
            Value(Object{{"b", 2}, {"a", 1}}));
}

}  // namespace
}  // namespace tandem::json
