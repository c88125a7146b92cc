// Runs the eplb binary as a user would: every shared vector case in
// reference mode, the default stable mode, CSV input with the SVG,
// --repeat and --previous, and bad inputs (exit 2, one line on stderr).

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "balance/testing/eplb_vectors.h"
#include "base/strict_json.h"
#include "base/testing/runfiles.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::tools {
namespace {

using ::tandem::balance::testing::ExpectedOutputs;
using ::tandem::balance::testing::ExpectedOutputsFromJson;
using ::tandem::balance::testing::LoadVectorCases;
using ::tandem::balance::testing::VectorCase;
using ::tandem::testing::RunfilePath;
using ::testing::HasSubstr;
using ::testing::StartsWith;

struct Result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return absl::StrCat(dir == nullptr ? "/tmp" : dir, "/", name);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

Result RunEplb(const std::string& args) {
  const std::string out = TempPath("stdout"), err = TempPath("stderr");
  const std::string command = absl::StrCat(RunfilePath("tools/eplb"), " ", args, " >", out, " 2>", err);
  const int status = std::system(command.c_str());
  Result r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = ReadFile(out);
  r.err = ReadFile(err);
  return r;
}

// The outputs of the CLI, compared array by array with the expectation.
void ExpectOutputs(const Result& r, const ExpectedOutputs& expected, const std::string& name) {
  ASSERT_EQ(r.exit_code, 0) << name << ": " << r.err;
  ASSERT_OK_AND_ASSIGN(json::Json doc, json::Parse(r.out));
  ASSERT_OK_AND_ASSIGN(ExpectedOutputs got, ExpectedOutputsFromJson(doc));
  EXPECT_EQ(got.phy2log, expected.phy2log) << name;
  EXPECT_EQ(got.log2phy, expected.log2phy) << name;
  EXPECT_EQ(got.logcnt, expected.logcnt) << name;
  EXPECT_EQ(got.width, expected.width) << name;
}

// Exit status 2 (bad invocation or input) and exactly one line on stderr
// containing `message`.
void ExpectFailure(const std::string& args, const std::string& message) {
  const Result r = RunEplb(args);
  EXPECT_EQ(r.exit_code, 2) << args;
  EXPECT_THAT(r.err, StartsWith("eplb: ")) << args;
  EXPECT_THAT(r.err, HasSubstr(message)) << args;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.out, "") << args;
}

TEST(EplbCliTest, EveryVectorCaseInReferenceMode) {
  ASSERT_OK_AND_ASSIGN(std::vector<VectorCase> cases, LoadVectorCases());
  int matched = 0;
  for (const VectorCase& c : cases) {
    const std::string input = TempPath(c.name + ".json");
    WriteFile(input, c.inputs.dump());
    ExpectOutputs(RunEplb("--input=" + input + " --mode=reference"), c.reference, c.name);
    matched += !::testing::Test::HasFailure();
  }
  std::cout << "CLI, reference mode: " << matched << "/" << cases.size() << " cases match\n";
}

TEST(EplbCliTest, DefaultIsStableModeAndReportsMetrics) {
  ASSERT_OK_AND_ASSIGN(std::vector<VectorCase> cases, LoadVectorCases());
  for (const VectorCase& c : cases) {
    if (c.name != "e60_hier_ints" && c.name != "readme_example") continue;
    const std::string input = TempPath(c.name + ".json");
    WriteFile(input, c.inputs.dump());
    const Result r = RunEplb("--input=" + input);
    ExpectOutputs(r, c.stable, c.name);
    ASSERT_OK_AND_ASSIGN(json::Json doc, json::Parse(r.out));
    ASSERT_TRUE(doc.contains("metrics"));
    const json::Json& expected = c.metrics.at("balancedness_per_layer");
    const json::Json& got = doc["metrics"].at("balancedness_per_layer");
    ASSERT_EQ(got.size(), expected.size());
    for (size_t l = 0; l < got.size(); ++l) {
      EXPECT_NEAR(got[l].get<double>(), expected[l].get<double>(), 5e-7);
    }
    EXPECT_EQ(doc.at("mode"), "stable");
  }
}

TEST(EplbCliTest, CsvInputSvgRepeatAndPrevious) {
  const std::string csv = TempPath("loads.csv");
  WriteFile(csv,
            "# two layers\n90,132,40,61,104,165,39,4,73,56,183,86\n"
            "20,107,104,64,19,197,187,157,172,86,16,27\n");
  const std::string flags = " --replicas=16 --groups=4 --nodes=2 --gpus=8";
  const std::string svg = TempPath("heatmap.svg");
  const std::string plan = TempPath("plan.json");
  Result r = RunEplb("--input=" + csv + flags + " --mode=refined --repeat=3" + " --svg=" + svg + " --output=" + plan);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_OK_AND_ASSIGN(json::Json doc, json::Parse(ReadFile(plan)));
  EXPECT_GT(doc.at("solve_ms_median").get<double>(), 0.0);
  EXPECT_EQ(doc.at("policy"), "hierarchical");
  const std::string picture = ReadFile(svg);
  EXPECT_THAT(picture, StartsWith("<svg"));
  EXPECT_THAT(picture, HasSubstr("lower bound"));
  EXPECT_GT(std::count(picture.begin(), picture.end(), '\n'), 32);
  // The same loads against the plan just written: nothing moves.
  r = RunEplb("--input=" + csv + flags + " --mode=refined --previous=" + plan + " --expert_bytes=1000 --svg=" + svg);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_OK_AND_ASSIGN(doc, json::Parse(r.out));
  ASSERT_TRUE(doc.contains("migration"));
  EXPECT_EQ(doc["migration"].at("moved_replicas"), 0);
  EXPECT_EQ(doc["migration"].at("moved_bytes"), 0);
  EXPECT_THAT(ReadFile(svg), HasSubstr("previous plan"));
}

// --gpu_speed: the plan beside the speed-blind one on max load / speed,
// recomputed here from the printed phy2log; bad speed lists are refused.
TEST(EplbCliTest, GpuSpeeds) {
  const std::string csv = TempPath("speed_loads.csv");
  const std::vector<double> loads = {90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86};
  WriteFile(csv, "90,132,40,61,104,165,39,4,73,56,183,86\n");
  const std::string flags = " --replicas=16 --groups=1 --nodes=1 --gpus=4";
  const Result r = RunEplb("--input=" + csv + flags + " --gpu_speed=1,0.5,1,1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_OK_AND_ASSIGN(json::Json doc, json::Parse(r.out));
  const json::Json& g = doc.at("gpu_speed");
  const double aware = g.at("max_load_per_speed").at(0).get<double>();
  EXPECT_LT(aware, g.at("speed_blind_max_load_per_speed").at(0).get<double>());
  std::vector<int> count(12, 0);
  const json::Json& p2l = doc.at("phy2log").at(0);
  for (const auto& e : p2l) ++count[e.get<int>()];
  const std::vector<double> speed = {1, 0.5, 1, 1};
  double worst = 0;
  for (int gpu = 0; gpu < 4; ++gpu) {
    double load = 0;
    for (int k = 0; k < 4; ++k) {
      const int e = p2l.at(gpu * 4 + k).get<int>();
      load += loads[e] / count[e];
    }
    worst = std::max(worst, load / speed[gpu]);
  }
  EXPECT_DOUBLE_EQ(worst, aware);
  ExpectFailure("--input=" + csv + flags + " --gpu_speed=1,0.5,1", "--gpu_speed: expected 4 comma-separated");
  ExpectFailure("--input=" + csv + flags + " --gpu_speed=1,0,1,1", "(item 1 is '0')");
}

TEST(EplbCliTest, BadInputExitsWithOneLine) {
  ExpectFailure("--input=/nonexistent/x.json", "--input=/nonexistent/x.json: cannot open the file");
  ExpectFailure("", "--input: expected a .json or .csv file, got none");
  const std::string broken = TempPath("broken.json");
  WriteFile(broken, "{\"weight\": [[1, 2] [3]]}\n");
  ExpectFailure("--input=" + broken,
                "broken.json: line 1 column 20: syntax error while parsing array - unexpected '['");
  const std::string ragged = TempPath("ragged.json");
  WriteFile(ragged, "{\"weight\": [[1, 2], [3]], \"num_replicas\": 2}");
  ExpectFailure("--input=" + ragged, "weight[1]: expected a row of 2 values, got [3]");
  const std::string bad_counts = TempPath("bad_counts.json");
  WriteFile(bad_counts,
            "{\"weight\": [[1, 2, 3, 4]], \"num_replicas\": 6, "
            "\"num_groups\": 2, \"num_nodes\": 1, \"num_gpus\": 4}");
  ExpectFailure("--input=" + bad_counts, "num_replicas: expected a multiple of num_gpus = 4, got 6");
  ExpectFailure("--input=" + bad_counts + " --replicas=8 --mode=fast",
                "--mode: expected stable, reference or refined, got 'fast'");
  const std::string csv = TempPath("bad.csv");
  WriteFile(csv, "1,-3,5,7\n");
  ExpectFailure("--input=" + csv + " --replicas=4 --groups=1 --nodes=1",
                "--gpus: expected a positive count for CSV input");
  ExpectFailure("--input=" + csv +
                    " --replicas=4 --groups=1 --nodes=1 "
                    "--gpus=2",
                "weights[0][1]: expected a finite load >= 0, got -3");
  WriteFile(csv, "1,2\n3\n");
  ExpectFailure("--input=" + csv +
                    " --replicas=2 --groups=1 --nodes=1 "
                    "--gpus=2",
                "line 2: expected 2 loads as in the first row, got 1");
  ExpectFailure("--input=" + bad_counts + " extra", "unexpected argument");
  // Regression: a malformed million-digit number was echoed whole (a 1 MB
  // error line); the message quotes a short excerpt.
  WriteFile(csv, "1," + std::string(1000000, '7') + "x\n");
  ExpectFailure("--input=" + csv + " --replicas=2 --groups=1 --nodes=1 --gpus=2",
                "line 1: expected a number, got '777");
  EXPECT_LT(RunEplb("--input=" + csv + " --replicas=2 --groups=1 --nodes=1 --gpus=2").err.size(), 300u);
  const Result not_a_number = RunEplb("--input=" + csv + " --replicas=abc");
  EXPECT_EQ(not_a_number.exit_code, 2);
  EXPECT_THAT(not_a_number.err, HasSubstr("flag 'replicas'"));
  const std::string plan = TempPath("short_plan.json");
  WriteFile(plan, "{\"phy2log\": [[0, 1, 2, 3, 0, 1]]}");
  ExpectFailure("--input=" + bad_counts + " --replicas=8 --previous=" + plan,
                "phy2log: expected 8 slots per layer (num_replicas), got 6");
}

}  // namespace
}  // namespace tandem::tools
