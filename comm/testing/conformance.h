// -----------------------------------------------------------------------------
// File: conformance.h
// -----------------------------------------------------------------------------
//
// One test suite for every Communicator backend (the checks of the comm
// anchors' section 6 that apply): exact-sum collectives compared bitwise with
// closed forms, tagged payloads, ordered point-to-point, disagreement and
// invalid-argument errors, a hung rank, split. Each check that decides
// correctness has a must-fail twin. A backend's test instantiates it:
//
//   INSTANTIATE_TEST_SUITE_P(Local, ConformanceTest,
//       ::testing::Combine(::testing::Values(LocalBackend()),
//                          ::testing::Values(1, 2, 3, 4, 8)));

#ifndef TANDEM_COMM_TESTING_CONFORMANCE_H_
#define TANDEM_COMM_TESTING_CONFORMANCE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "comm/communicator.h"
#include "gtest/gtest.h"

namespace tandem::comm::testing {

// How a test reaches a backend: make a group, and move bytes between host
// and the memory the backend's buffers live in.
struct Backend {
  std::string name;
  std::function<absl::StatusOr<std::vector<std::unique_ptr<Communicator>>>(int size)> make_group;
  // Device (or host) buffer of `bytes` for rank `rank`; freed by Free.
  std::function<void*(int rank, int64_t bytes)> alloc;
  std::function<void(int rank, void* p)> free;
  std::function<void(int rank, void* dst, const void* host, int64_t bytes)> upload;
  std::function<void(int rank, void* host, const void* src, int64_t bytes)> download;
  // Empty when usable; else the reason to skip (e.g. no GPU).
  std::function<std::string()> unavailable;
};

Backend LocalBackend();

// Runs fn(rank, comm) on one thread per rank and collects each status.
std::vector<absl::Status> RunRanks(std::vector<std::unique_ptr<Communicator>>& comms,
                                   const std::function<absl::Status(int, Communicator&)>& fn);

class ConformanceTest : public ::testing::TestWithParam<std::tuple<Backend, int>> {};

}  // namespace tandem::comm::testing

#endif  // TANDEM_COMM_TESTING_CONFORMANCE_H_
