// placeholder
#ifndef TANDEM_BALANCE_INTERNAL_REFINE_H_
#define TANDEM_BALANCE_INTERNAL_REFINE_H_
#include <cstdint>
#include <vector>
#include "balance/internal/hierarchical.h"
#include "balance/placement.h"
namespace tandem::balance::internal {
inline void RefineLayers(const Weights&, const Shape&, bool, std::vector<int32_t>*, std::vector<int32_t>*) {}
}
#endif
