// -----------------------------------------------------------------------------
// File: eplb_heatmap.h
// -----------------------------------------------------------------------------
//
// An SVG heatmap of per-GPU expert loads, before and after a rebalance, for
// the `eplb` CLI: one row per layer, one cell per GPU, coloured by the
// load's ratio to the layer's lower bound (total load / GPUs). The colour bar
// marks the lower bound; each row ends with its max / lower bound.

#ifndef TANDEM_TOOLS_EPLB_HEATMAP_H_
#define TANDEM_TOOLS_EPLB_HEATMAP_H_

#include <string>
#include <vector>

namespace tandem::tools {

struct HeatmapPanel {
  std::string title;          // e.g. "before (previous plan)"
  std::vector<double> loads;  // [layers][gpus] GPU loads
};

// RenderHeatmapSvg()
//
// A standalone SVG document with the panels side by side. Every panel has
// num_layers * num_gpus loads (the caller ensures it); `lower_bound` has one
// entry per layer.
std::string RenderHeatmapSvg(const std::vector<HeatmapPanel>& panels, const std::vector<double>& lower_bound,
                             int num_layers, int num_gpus);

}  // namespace tandem::tools

#endif  // TANDEM_TOOLS_EPLB_HEATMAP_H_
