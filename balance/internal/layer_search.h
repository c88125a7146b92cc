// -----------------------------------------------------------------------------
// File: layer_search.h
// -----------------------------------------------------------------------------
//
// Local search on one layer's placement under float64 loads (each expert's
// load split evenly over its replicas). Two moves, both aimed at the most
// loaded GPU: a swap exchanges the replicas of two slots on different GPUs;
// a recount turns one slot's replica into a replica of another expert (one
// replica fewer for a donor with two or more, one more for the receiver).
// A move is taken only if every GPU it touches ends below the current
// maximum, so the maximum never rises. Used by the refined mode and by
// migration-aware rebalancing.

#ifndef TANDEM_BALANCE_INTERNAL_LAYER_SEARCH_H_
#define TANDEM_BALANCE_INTERNAL_LAYER_SEARCH_H_

#include <cstdint>
#include <vector>

#include "balance/internal/hierarchical.h"

namespace tandem::balance::internal {

// Where a replica may be placed.
enum class Pin {
  kNone,  // anywhere
  kNode,  // only on its expert's node (the reference's hierarchical rule)
  kHome,  // rank 0 only on its expert's node, other ranks anywhere
};

struct SearchOptions {
  Pin pin = Pin::kNone;
  bool no_duplicates = false;  // never two replicas of an expert on a GPU
  bool recount = true;         // allow recount moves
  double stop_at = 0.0;        // stop once the max GPU load is <= this
  // false: pick the move leaving the smallest maximum of the GPUs it
  // touches. true (migration): pick the move with the most gain per changed
  // slot (a swap changes 2, a recount 1), gain counted down to stop_at.
  bool per_change = false;
  int max_moves = 1 << 20;
};

class LayerSearch {
 public:
  explicit LayerSearch(const Shape& shape) : shape_(shape) {}

  // LayerSearch::Assign()
  //
  // Loads a plan: per-expert loads `w` (num_experts values, kept by
  // pointer), slot experts `phy2log` and replica ranks `rank`. An expert's
  // node, for pinning, is the node of its rank-0 replica.
  void Assign(const double* w, const int32_t* phy2log, const int32_t* rank);

  // LayerSearch::Search()
  //
  // Applies improving moves until none is left, the maximum reaches
  // `options.stop_at`, or `options.max_moves` moves were made. Returns the
  // number of moves made.
  int Search(const SearchOptions& options);

  // LayerSearch::MaxGpuLoad()
  //
  // The largest GPU load, each summed in slot order from the loads, so it
  // is bit-identical to metrics.h for the same plan.
  double MaxGpuLoad() const;

  // LayerSearch::Balancedness()
  //
  // Mean / max GPU load (1 when all are 0), bit-identical to metrics.h.
  double Balancedness() const;

  // Number of slots whose expert differs from `phy2log`.
  int ChangedSlots(const int32_t* phy2log) const;

  // Writes the current plan.
  void Store(int32_t* phy2log, int32_t* rank) const;

 private:
  struct Move {
    int s = -1;          // slot
    int t = -1;          // swap: the other slot; recount: unused
    int expert = -1;     // recount: the expert slot s receives
    double worst = 0.0;  // largest new load among the touched GPUs
    double score = 0.0;  // higher is better
  };

  int GpuOf(int slot) const { return slot / per_gpu_; }
  int NodeOf(int gpu) const { return gpu / gpus_per_node_; }
  double Item(int expert, int count) const { return w_[expert] / count; }
  bool Holds(int gpu, int expert, int except_slot) const;
  bool CanSwap(int s, int t, const SearchOptions& o) const;
  bool CanPlace(int expert, int slot, const SearchOptions& o) const;
  double Score(double top, double worst, int changes, const SearchOptions& o) const;
  void BestSwap(int g, const SearchOptions& o, Move* best);
  void BestRecount(int g, const SearchOptions& o, Move* best);
  // Largest new load among the GPUs slot `t` turning into `e` touches, or
  // a negative value if it leaves GPU `g` untouched.
  double RecountWorst(int t, int e, int g);
  void ApplySwap(int s, int t);
  void ApplyRecount(int t, int e);
  void RecomputeGpu(int g);
  double ExactGpuLoad(int g) const;

  const Shape& shape_;
  const int per_gpu_ = shape_.slots_per_gpu();
  const int gpus_per_node_ = shape_.gpus_per_node();
  const double* w_ = nullptr;
  std::vector<int32_t> expert_, rank_, count_, node_;
  std::vector<std::vector<int32_t>> slots_of_;
  std::vector<double> item_, load_;
  // Scratch for RecountWorst and candidate lists.
  std::vector<std::pair<int, double>> touched_;
  std::vector<int> candidates_;
  std::vector<int> by_load_;
};

}  // namespace tandem::balance::internal

#endif  // TANDEM_BALANCE_INTERNAL_LAYER_SEARCH_H_
