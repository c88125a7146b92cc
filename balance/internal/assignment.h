// -----------------------------------------------------------------------------
// File: assignment.h
// -----------------------------------------------------------------------------
//
// Minimum-cost perfect matching on a square cost matrix (the Hungarian
// method with potentials, O(n^3)). Used to line a fresh placement up with
// the previous one so that as few slots as possible change.

#ifndef TANDEM_BALANCE_INTERNAL_ASSIGNMENT_H_
#define TANDEM_BALANCE_INTERNAL_ASSIGNMENT_H_

#include <cstdint>
#include <vector>

namespace tandem::balance::internal {

// MinCostAssignment()
//
// `cost` is n x n row-major (n * n entries, n >= 0). Returns `col` with
// col[row] the column matched to each row, minimising the summed cost;
// among optimal matchings the result is deterministic.
std::vector<int> MinCostAssignment(const std::vector<int64_t>& cost, int n);

}  // namespace tandem::balance::internal

#endif  // TANDEM_BALANCE_INTERNAL_ASSIGNMENT_H_
