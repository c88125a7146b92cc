#include "tools/eplb_heatmap.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tandem::tools {
namespace {

// Ratios to the lower bound at or beyond this get the darkest red.
constexpr double kMaxRatio = 2.0;

// White-blue below the lower bound (idle capacity), yellow to dark red above
// it (the layer waits for these GPUs).
std::string Colour(double ratio) {
  auto mix = [](double a, double b, double t) { return static_cast<int>(std::lround(a + (b - a) * t)); };
  int r, g, b;
  if (ratio <= 1.0) {
    const double t = std::clamp(ratio, 0.0, 1.0);
    r = mix(66, 255, t);
    g = mix(133, 255, t);
    b = mix(244, 255, t);
  } else if (ratio <= 1.25) {
    const double t = (ratio - 1.0) / 0.25;
    r = 255;
    g = mix(255, 193, t);
    b = mix(255, 7, t);
  } else {
    const double t = std::clamp((ratio - 1.25) / (kMaxRatio - 1.25), 0.0, 1.0);
    r = mix(255, 139, t);
    g = mix(193, 0, t);
    b = mix(7, 0, t);
  }
  return absl::StrFormat("#%02x%02x%02x", r, g, b);
}

std::string Escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '<') {
      out += "&lt;";
    } else if (c == '>') {
      out += "&gt;";
    } else if (c == '&') {
      out += "&amp;";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string RenderHeatmapSvg(const std::vector<HeatmapPanel>& panels, const std::vector<double>& lower_bound,
                             int num_layers, int num_gpus) {
  const double cell_w = std::clamp(640.0 / num_gpus, 3.0, 24.0);
  const double cell_h = std::clamp(720.0 / num_layers, 3.0, 18.0);
  const double grid_w = cell_w * num_gpus;
  const double panel_w = 40 + grid_w + 56;
  const double top = 48;
  const double grid_h = cell_h * num_layers;
  const double width = 16 + panel_w * panels.size() + 16;
  const double height = top + grid_h + 70;
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
      "height=\"%.0f\" font-family=\"sans-serif\" font-size=\"11\">\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
      width, height);
  for (size_t p = 0; p < panels.size(); ++p) {
    const HeatmapPanel& panel = panels[p];
    const double x0 = 16 + panel_w * p + 40;
    double sum_max = 0, sum_mean = 0;
    for (int l = 0; l < num_layers; ++l) {
      const double* row = &panel.loads[static_cast<size_t>(l) * num_gpus];
      sum_max += *std::max_element(row, row + num_gpus);
      sum_mean += lower_bound[l];
    }
    absl::StrAppendFormat(&svg, "<text x=\"%.1f\" y=\"20\" font-weight=\"bold\">%s</text>\n", x0, Escape(panel.title));
    absl::StrAppendFormat(&svg,
                          "<text x=\"%.1f\" y=\"36\">balancedness %.4f (mean / max, all "
                          "layers)</text>\n",
                          x0, sum_max > 0 ? sum_mean / sum_max : 1.0);
    absl::StrAppendFormat(&svg,
                          "<text x=\"%.1f\" y=\"%.1f\" "
                          "text-anchor=\"end\">layer</text>\n",
                          x0 - 4, top - 2);
    for (int l = 0; l < num_layers; ++l) {
      const double y = top + cell_h * l;
      const double* row = &panel.loads[static_cast<size_t>(l) * num_gpus];
      const double lb = lower_bound[l];
      for (int g = 0; g < num_gpus; ++g) {
        const double ratio = lb > 0 ? row[g] / lb : 1.0;
        absl::StrAppendFormat(&svg,
                              "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                              "fill=\"%s\"><title>layer %d GPU %d: load %.6g = %.3f x lower "
                              "bound</title></rect>\n",
                              x0 + cell_w * g, y, cell_w, cell_h, Colour(ratio), l, g, row[g], ratio);
      }
      const double max = *std::max_element(row, row + num_gpus);
      if (cell_h >= 8 || l % 5 == 0) {
        absl::StrAppendFormat(&svg,
                              "<text x=\"%.1f\" y=\"%.1f\" "
                              "text-anchor=\"end\">%d</text>\n",
                              x0 - 4, y + cell_h - 1, l);
      }
      if (cell_h >= 8) {
        absl::StrAppendFormat(&svg, "<text x=\"%.1f\" y=\"%.1f\">%.2f</text>\n", x0 + grid_w + 4, y + cell_h - 1,
                              lb > 0 ? max / lb : 1.0);
      }
    }
    absl::StrAppendFormat(&svg, "<text x=\"%.1f\" y=\"%.1f\">max/LB</text>\n", x0 + grid_w + 4, top - 2);
    absl::StrAppendFormat(&svg, "<text x=\"%.1f\" y=\"%.1f\">GPU 0 .. %d</text>\n", x0, top + grid_h + 14,
                          num_gpus - 1);
  }
  // Colour bar from 0 to kMaxRatio x lower bound, the lower bound marked.
  const double bar_x = 56, bar_y = top + grid_h + 30, bar_w = 320;
  for (int i = 0; i < 64; ++i) {
    absl::StrAppendFormat(&svg,
                          "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.2f\" height=\"12\" "
                          "fill=\"%s\"/>\n",
                          bar_x + bar_w * i / 64, bar_y, bar_w / 64 + 0.5, Colour(kMaxRatio * (i + 0.5) / 64));
  }
  const double lb_x = bar_x + bar_w / kMaxRatio;
  absl::StrAppendFormat(&svg,
                        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\" "
                        "stroke-width=\"2\"/>\n"
                        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">lower bound "
                        "(total load / GPUs)</text>\n"
                        "<text x=\"%.1f\" y=\"%.1f\">0</text>\n"
                        "<text x=\"%.1f\" y=\"%.1f\">%.1fx</text>\n",
                        lb_x, bar_y - 4, lb_x, bar_y + 16, lb_x, bar_y + 28, bar_x - 10, bar_y + 10, bar_x + bar_w + 4,
                        bar_y + 10, kMaxRatio);
  svg += "</svg>\n";
  return svg;
}

}  // namespace tandem::tools
