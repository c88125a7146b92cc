#include "comm/local/local_communicator.h"

#include "absl/strings/str_cat.h"
#include "comm/testing/conformance.h"
#include "gtest/gtest.h"

namespace tandem::comm::testing {
namespace {

INSTANTIATE_TEST_SUITE_P(Local, ConformanceTest,
                         ::testing::Combine(::testing::Values(LocalBackend()), ::testing::Values(1, 2, 3, 4, 8)),
                         [](const ::testing::TestParamInfo<ConformanceTest::ParamType>& info) {
                           return absl::StrCat(std::get<0>(info.param).name, "_", std::get<1>(info.param), "ranks");
                         });

}  // namespace
}  // namespace tandem::comm::testing
