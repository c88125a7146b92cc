#include "schedule/simulator/render.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/strict_json.h"

namespace tandem::schedule {
namespace {

// Compute actions of rank r with their simulated intervals.
struct Box {
  const Action* action;
  Interval at;
};

std::vector<Box> ComputeBoxes(const Schedule& s, const SimResult& res, int r) {
  std::vector<Box> out;
  const std::vector<Action>& p = s.programs[r].actions;
  for (size_t i = 0; i < p.size() && i < res.timeline[r].size(); ++i) {
    if (IsCompute(p[i].op)) out.push_back({&p[i], res.timeline[r][i]});
  }
  return out;
}

const char* Colour(Op op) {
  switch (op) {
    case Op::kForward:
      return "#f6c85f";
    case Op::kBackward:
      return "#6f9fd8";
    case Op::kBackwardInput:
      return "#9fd08c";
    case Op::kBackwardWeight:
      return "#c89fd8";
    default:
      return "#f28e56";
  }
}

}  // namespace

std::string RenderSvg(const Schedule& s, const SimResult& res) {
  const double scale = res.makespan > 0 ? std::min(40.0, 1600.0 / res.makespan) : 1.0;
  const int row = 26, left = 48, top = 30;
  const double width = left + res.makespan * scale + 20;
  const int height = top + s.ranks * row + 50;
  std::string out = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%d\" "
      "font-family=\"monospace\" font-size=\"11\">\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
      "<text x=\"%d\" y=\"18\">%s: %d ranks, %d stages, %d micro-batches; makespan %.6g, bubble %.6g (%.1f%%)</text>\n",
      width, height, left, KindName(s.kind), s.ranks, s.stages, s.microbatches, res.makespan, res.bubble,
      100 * res.bubble_ratio);
  for (int r = 0; r < s.ranks; ++r) {
    const int y = top + r * row;
    absl::StrAppend(&out, absl::StrFormat("<text x=\"4\" y=\"%d\">r%d</text>\n", y + 16, r));
    for (const Box& b : ComputeBoxes(s, res, r)) {
      const Action& a = *b.action;
      const double x = left + b.at.start * scale, w = (b.at.end - b.at.start) * scale;
      std::string label = absl::StrCat(a.mb);
      if (a.op == Op::kForwardBackward) label = absl::StrCat(a.mb, "/", a.mb_b);
      absl::StrAppend(
          &out, absl::StrFormat("<rect x=\"%.2f\" y=\"%d\" width=\"%.2f\" height=\"%d\" fill=\"%s\" stroke=\"#333\" "
                                "stroke-width=\"0.5\"><title>%s [%.6g, %.6g]</title></rect>\n",
                                x, y, w, row - 4, Colour(a.op), DescribeAction(s, a), b.at.start, b.at.end));
      if (w >= 10) {
        absl::StrAppend(&out, absl::StrFormat("<text x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x + w / 2,
                                              y + 15, label));
      }
    }
  }
  int x = left;
  const int y = top + s.ranks * row + 20;
  for (Op op : {Op::kForward, Op::kBackward, Op::kBackwardInput, Op::kBackwardWeight, Op::kForwardBackward}) {
    absl::StrAppend(
        &out, absl::StrFormat(
                  "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"14\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">%s</text>\n",
                  x, y, Colour(op), x + 18, y + 11, TorchToken(op)));
    x += 40 + 8 * static_cast<int>(TorchToken(op).size());
  }
  out += "</svg>\n";
  return out;
}

std::string RenderAscii(const Schedule& s, const SimResult& res) {
  // One cell per time unit, the shortest compute duration.
  double unit = 0;
  for (int r = 0; r < s.ranks; ++r) {
    for (const Box& b : ComputeBoxes(s, res, r)) {
      const double d = b.at.end - b.at.start;
      if (d > 0 && (unit == 0 || d < unit)) unit = d;
    }
  }
  if (unit == 0) unit = 1;
  const int cells = static_cast<int>(std::ceil(res.makespan / unit - 1e-9));
  std::string out;
  for (int r = 0; r < s.ranks; ++r) {
    std::vector<std::string> line(cells, "..");
    for (const Box& b : ComputeBoxes(s, res, r)) {
      const Action& a = *b.action;
      const int from = static_cast<int>(std::lround(b.at.start / unit));
      const int to = static_cast<int>(std::lround(b.at.end / unit));
      for (int c = from; c < to && c < cells; ++c) {
        const bool f_part = a.op == Op::kForwardBackward && c == from;
        const Op op = a.op == Op::kForwardBackward ? (f_part ? Op::kForward : Op::kBackward) : a.op;
        const int chunk = a.op == Op::kForwardBackward && !f_part ? s.where(a.direction_b, a.stage_b).chunk
                                                                  : s.where(a.direction, a.stage).chunk;
        line[c] = absl::StrCat(TraceToken(op), chunk);
      }
    }
    absl::StrAppend(&out, "r", r, " ");
    for (int c = 0; c < cells; ++c) absl::StrAppend(&out, c ? " " : "", line[c]);
    out += "\n";
  }
  return out;
}

absl::StatusOr<std::string> RenderChromeTrace(const Schedule& s, const SimResult& res, double unit_us) {
  json::Json events = json::Json::array();
  for (int r = 0; r < s.ranks; ++r) {
    events.push_back(
        {{"ph", "M"}, {"name", "process_name"}, {"pid", r}, {"args", {{"name", absl::StrCat("rank ", r)}}}});
    events.push_back({{"ph", "M"}, {"name", "thread_name"}, {"pid", r}, {"tid", 0}, {"args", {{"name", "compute"}}}});
    events.push_back({{"ph", "M"}, {"name", "thread_name"}, {"pid", r}, {"tid", 1}, {"args", {{"name", "comm"}}}});
    const std::vector<Action>& p = s.programs[r].actions;
    for (size_t i = 0; i < p.size() && i < res.timeline[r].size(); ++i) {
      const Interval& t = res.timeline[r][i];
      const bool comm = IsComm(p[i].op);
      events.push_back({{"ph", "X"},
                        {"name", DescribeAction(s, p[i])},
                        {"cat", comm ? "comm" : "compute"},
                        {"pid", r},
                        {"tid", comm ? 1 : 0},
                        {"ts", t.start * unit_us},
                        {"dur", (t.end - t.start) * unit_us},
                        {"args", {{"id", absl::StrCat("r", r, ".", i)}}}});
    }
    if (r < static_cast<int>(res.exchanges.size())) {
      for (const PhaseSpan& e : res.exchanges[r]) {
        events.push_back({{"ph", "X"},
                          {"name", e.label.empty() ? std::string("ep exchange") : e.label},
                          {"cat", "ep"},
                          {"pid", r},
                          {"tid", 1},
                          {"ts", e.start * unit_us},
                          {"dur", (e.end - e.start) * unit_us}});
      }
    }
  }
  return json::Dump(json::Json{{"traceEvents", std::move(events)}});
}

}  // namespace tandem::schedule
