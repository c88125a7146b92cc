#include "schedule/formats/torch_csv.h"

#include <algorithm>
#include <map>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "schedule/lowering/lower.h"

namespace tandem::schedule {

std::string TorchActionString(const Action& a) {
  if (a.op == Op::kForwardBackward) {
    return absl::StrCat("(", a.stage, "F", a.mb, ";", a.stage_b, "B", a.mb_b, ")OVERLAP_F_B");
  }
  return absl::StrCat(a.stage, TorchToken(a.op), a.mb);
}

absl::StatusOr<std::string> FormatTorchCsv(const Schedule& s) {
  if (s.directions != 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: places each stage on two ranks (one copy per direction), which "
                        "PyTorch's CSV cannot express",
                        KindName(s.kind)));
  }
  std::string out;
  for (const RankProgram& p : s.programs) {
    for (size_t i = 0; i < p.actions.size(); ++i) {
      if (i > 0) out += ",";
      out += TorchActionString(p.actions[i]);
    }
    out += "\n";
  }
  return out;
}

namespace {

struct Cell {
  Op op;
  int stage, mb, stage_b = -1, mb_b = -1;
};

absl::Status CellError(int line, int column, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrFormat("line %d column %d: %s", line, column, what));
}

// "{stage}{TOKEN}{mb}" with TOKEN in `tokens`; false if it does not parse.
bool ParsePlain(absl::string_view cell, Op* op, int* stage, int* mb) {
  size_t i = 0;
  while (i < cell.size() && absl::ascii_isdigit(cell[i])) ++i;
  if (i == 0 || i > 9 || !absl::SimpleAtoi(cell.substr(0, i), stage)) return false;
  absl::string_view rest = cell.substr(i);
  // Longest tokens first: "SEND_F" before "F".
  static constexpr Op kOps[] = {Op::kSendF,   Op::kRecvF,    Op::kSendB,         Op::kRecvB,
                                Op::kForward, Op::kBackward, Op::kBackwardInput, Op::kBackwardWeight};
  for (Op candidate : kOps) {
    const absl::string_view token = TorchToken(candidate);
    if (absl::StartsWith(rest, token)) {
      absl::string_view digits = rest.substr(token.size());
      if (digits.empty() || digits.size() > 9) return false;
      for (char c : digits) {
        if (!absl::ascii_isdigit(c)) return false;
      }
      *op = candidate;
      return absl::SimpleAtoi(digits, mb);
    }
  }
  return false;
}

}  // namespace

absl::StatusOr<Schedule> ParseTorchCsv(absl::string_view text, Kind kind, int microbatches) {
  std::vector<absl::string_view> rows = absl::StrSplit(text, '\n');
  while (!rows.empty() && absl::StripAsciiWhitespace(rows.back()).empty()) rows.pop_back();
  if (rows.empty()) return CellError(1, 1, "empty CSV: expected one row per rank");
  std::vector<std::vector<Cell>> cells(rows.size());
  int stages = 0, max_mb = -1;
  bool lowered = false;
  for (size_t r = 0; r < rows.size(); ++r) {
    const int line = static_cast<int>(r) + 1;
    int column = 1;
    for (absl::string_view raw : absl::StrSplit(rows[r], ',')) {
      const int at = column;
      column += static_cast<int>(raw.size()) + 1;
      const absl::string_view cell = absl::StripAsciiWhitespace(raw);
      if (cell.empty()) continue;  // idle step
      if (absl::EndsWith(cell, "UNSHARD") || absl::EndsWith(cell, "RESHARD") || absl::EndsWith(cell, "REDUCE_GRAD")) {
        continue;  // FSDP actions carry no P2P meaning
      }
      Cell c;
      if (absl::StartsWith(cell, "(")) {
        if (!absl::EndsWith(cell, ")OVERLAP_F_B")) {
          return CellError(line, at, absl::StrFormat("'%s': expected '(...)OVERLAP_F_B'", cell));
        }
        absl::string_view inner = cell.substr(1, cell.size() - 1 - strlen(")OVERLAP_F_B"));
        std::vector<absl::string_view> parts = absl::StrSplit(inner, ';');
        Op f, b;
        if (parts.size() != 2 || !ParsePlain(parts[0], &f, &c.stage, &c.mb) ||
            !ParsePlain(parts[1], &b, &c.stage_b, &c.mb_b) || f != Op::kForward || b != Op::kBackward) {
          return CellError(line, at, absl::StrFormat("'%s': expected '(<stage>F<mb>;<stage>B<mb>)OVERLAP_F_B'", cell));
        }
        c.op = Op::kForwardBackward;
      } else if (!ParsePlain(cell, &c.op, &c.stage, &c.mb)) {
        return CellError(line, at,
                         absl::StrFormat("'%s': expected <stage><F|B|I|W|SEND_F|RECV_F|SEND_B|RECV_B><mb>", cell));
      }
      lowered = lowered || IsComm(c.op);
      stages = std::max({stages, c.stage + 1, c.stage_b + 1});
      max_mb = std::max({max_mb, c.mb, c.mb_b});
      cells[r].push_back(c);
    }
  }
  const int ranks = static_cast<int>(rows.size());
  if (stages == 0) return CellError(1, 1, "no actions");
  if (stages > (1 << 20) || max_mb >= (1 << 20)) {
    return CellError(1, 1, absl::StrFormat("stage %d or micro-batch %d too large", stages - 1, max_mb));
  }
  // Placement: each stage belongs to the rank whose compute actions use it;
  // a rank's chunks are its stages in increasing order.
  std::vector<int> owner(stages, -1);
  for (int r = 0; r < ranks; ++r) {
    for (const Cell& c : cells[r]) {
      if (IsComm(c.op)) continue;
      for (int stage : {c.stage, c.stage_b}) {
        if (stage < 0) continue;
        if (owner[stage] >= 0 && owner[stage] != r) {
          return CellError(r + 1, 1,
                           absl::StrFormat("stage %d appears on ranks %d and %d (each stage belongs to one rank)",
                                           stage, owner[stage], r));
        }
        owner[stage] = r;
      }
    }
  }
  Schedule s;
  s.kind = kind;
  s.ranks = ranks;
  s.stages = stages;
  s.microbatches = microbatches > 0 ? microbatches : max_mb + 1;
  s.lowered = lowered;
  s.placement.resize(stages);
  std::vector<int> chunks_of(ranks, 0);
  for (int stage = 0; stage < stages; ++stage) {
    if (owner[stage] < 0) {
      return CellError(1, 1, absl::StrFormat("stage %d has no compute action on any rank", stage));
    }
    s.placement[stage] = {owner[stage], chunks_of[owner[stage]]++};
  }
  s.chunks = *std::max_element(chunks_of.begin(), chunks_of.end());
  s.programs.resize(ranks);
  for (int r = 0; r < ranks; ++r) {
    RankProgram& p = s.programs[r];
    for (const Cell& c : cells[r]) {
      if (c.op == Op::kForwardBackward) {
        p.actions.push_back(Action::Overlap(c.stage, c.mb, 0, c.stage_b, c.mb_b, 0));
      } else if (IsComm(c.op)) {
        const int from = c.op == Op::kSendF || c.op == Op::kRecvB ? c.stage + 1 : c.stage - 1;
        if (from < 0 || from >= stages) {
          return CellError(
              r + 1, 1,
              absl::StrFormat("%s: no peer stage %d", TorchActionString(Action::Compute(c.op, c.stage, c.mb)), from));
        }
        p.actions.push_back(Action::Comm(c.op, c.stage, c.mb, 0, owner[from], static_cast<int>(p.batches.size())));
        p.batches.push_back({});
      } else {
        p.actions.push_back(Action::Compute(c.op, c.stage, c.mb));
      }
    }
  }
  if (lowered) SetTorchWaits(&s);
  return s;
}

}  // namespace tandem::schedule
