// -----------------------------------------------------------------------------
// File: speed_packing.h
// -----------------------------------------------------------------------------
//
// Speed-aware packing of one layer for GPUs of unequal speed: the objective
// is the largest GPU load divided by the GPU's speed (the time the slowest
// GPU needs). RepackForSpeed() keeps each node's replicas on the node and
// every GPU's slot count, and redistributes a node's replicas over its GPUs:
// heaviest first onto the GPU whose load / speed after it is smallest
// (among GPUs with a free slot), then moves at the GPU that finishes last
// while one lowers every GPU it touches below it: swaps of two replicas
// between GPUs of the node, and recounts (a replica of an expert with
// several becomes another expert's; only when every expert's replicas lie
// on one node, as in the reference's plans). A node keeps its old packing
// unless the new one finishes earlier.

#ifndef TANDEM_BALANCE_INTERNAL_SPEED_PACKING_H_
#define TANDEM_BALANCE_INTERNAL_SPEED_PACKING_H_

#include <cstdint>

#include "balance/internal/hierarchical.h"

namespace tandem::balance::internal {

// SpeedScaledMax()
//
// max over GPUs of load / speed for a layer's plan: per-expert loads `w`
// (float64, split evenly over an expert's replicas), slot experts `phy2log`
// (num_replicas), `speed` per GPU. Loads summed in slot order.
double SpeedScaledMax(const double* w, const Shape& shape, const double* speed, const int32_t* phy2log);

// RepackForSpeed()
//
// Rewrites `phy2log` and `rank` (a valid plan of `shape`) as described
// above. With `no_duplicates`, no GPU ends with two replicas of an expert;
// returns false (plan untouched) when the greedy start cannot avoid one.
bool RepackForSpeed(const double* w, const Shape& shape, const double* speed, bool no_duplicates, int32_t* phy2log,
                    int32_t* rank);

}  // namespace tandem::balance::internal

#endif  // TANDEM_BALANCE_INTERNAL_SPEED_PACKING_H_
