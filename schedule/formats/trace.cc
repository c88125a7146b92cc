#include "schedule/formats/trace.h"

#include <algorithm>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace tandem::schedule {
namespace {

void AppendPart(const Schedule& s, int stage, int dir, int mb, std::string* out) {
  absl::StrAppend(out, s.where(dir, stage).chunk, ".", mb);
}

}  // namespace

std::string FormatTrace(const Schedule& s) {
  std::string out;
  out.reserve(s.TotalActions() * 10);
  for (int r = 0; r < s.ranks; ++r) {
    absl::StrAppend(&out, "r", r, ":");
    const std::vector<Action>& actions = s.programs[r].actions;
    for (size_t i = 0; i < actions.size(); ++i) {
      const Action& a = actions[i];
      if (IsComm(a.op)) {
        const bool opens = i == 0 || actions[i - 1].batch != a.batch || !IsComm(actions[i - 1].op);
        const bool closes = i + 1 == actions.size() || actions[i + 1].batch != a.batch || !IsComm(actions[i + 1].op);
        out += opens ? " [" : ",";
        absl::StrAppend(&out, TraceToken(a.op));
        AppendPart(s, a.stage, a.direction, a.mb, &out);
        absl::StrAppend(&out, "@", a.peer);
        if (closes) out += "]";
        continue;
      }
      absl::StrAppend(&out, " ", TraceToken(a.op));
      AppendPart(s, a.stage, a.direction, a.mb, &out);
      if (a.op == Op::kForwardBackward) {
        out += "+";
        AppendPart(s, a.stage_b, a.direction_b, a.mb_b, &out);
      }
    }
    out += "\n";
  }
  return out;
}

namespace {

class TraceParser {
 public:
  TraceParser(int line, absl::string_view text, const Schedule& s, RankProgram* out)
      : line_(line), text_(text), s_(s), out_(out) {}

  absl::Status ParseRankLine(int rank) {
    // "r<k>:" prefix.
    if (!Consume("r")) return Error("expected 'r<rank>:'");
    int got;
    if (!Number(&got)) return Error("expected a rank number after 'r'");
    if (got != rank) {
      return Error(absl::StrFormat("expected rank %d (ranks in order), got %d", rank, got));
    }
    if (!Consume(":")) return Error("expected ':' after the rank");
    while (true) {
      SkipSpaces();
      if (pos_ >= text_.size()) break;
      if (text_[pos_] == '[') {
        if (absl::Status st = ParseBatch(rank); !st.ok()) return st;
      } else if (absl::Status st = ParseCompute(rank); !st.ok()) {
        return st;
      }
    }
    // Lowered: every batch is waited on before the next action.
    return absl::OkStatus();
  }

  bool saw_batch() const { return saw_batch_; }

 private:
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrFormat("line %d column %d: %s", line_, pos_ + 1, what));
  }
  void SkipSpaces() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\r')) ++pos_;
  }
  bool Consume(absl::string_view token) {
    if (text_.substr(pos_, token.size()) != token) return false;
    pos_ += token.size();
    return true;
  }
  bool Number(int* value) {
    size_t end = pos_;
    while (end < text_.size() && end - pos_ < 9 && absl::ascii_isdigit(text_[end])) ++end;
    if (end == pos_) return false;
    if (!absl::SimpleAtoi(text_.substr(pos_, end - pos_), value)) return false;
    pos_ = end;
    return true;
  }
  // "<chunk>.<mb>" on `rank`; resolves the stage copy through the placement.
  absl::Status Part(int rank, int* stage, int* dir, int* mb) {
    int chunk;
    if (!Number(&chunk)) return Error("expected a chunk number");
    if (!Consume(".")) return Error("expected '.' between chunk and micro-batch");
    const size_t mb_pos = pos_;
    if (!Number(mb)) return Error("expected a micro-batch number");
    *stage = s_.StageAt(rank, chunk, dir);
    if (*stage < 0) {
      return Error(absl::StrFormat("rank %d has no chunk %d", rank, chunk));
    }
    if (*mb >= s_.microbatches_per_direction()) {
      pos_ = mb_pos;
      return Error(
          absl::StrFormat("micro-batch %d out of range (%d per direction)", *mb, s_.microbatches_per_direction()));
    }
    return absl::OkStatus();
  }

  absl::Status ParseCompute(int rank) {
    Op op;
    if (Consume("FB")) {
      op = Op::kForwardBackward;
    } else if (Consume("F")) {
      op = Op::kForward;
    } else if (Consume("B")) {
      op = Op::kBackward;
    } else if (Consume("I")) {
      op = Op::kBackwardInput;
    } else if (Consume("W")) {
      op = Op::kBackwardWeight;
    } else {
      return Error("expected an action (F, B, I, W, FB) or a batch '['");
    }
    int stage, dir, mb;
    if (absl::Status st = Part(rank, &stage, &dir, &mb); !st.ok()) return st;
    Action a = Action::Compute(op, stage, mb, dir);
    if (op == Op::kForwardBackward) {
      if (!Consume("+")) return Error("expected '+' between the parts of FB");
      int stage_b, dir_b, mb_b;
      if (absl::Status st = Part(rank, &stage_b, &dir_b, &mb_b); !st.ok()) return st;
      a = Action::Overlap(stage, mb, dir, stage_b, mb_b, dir_b);
    }
    out_->actions.push_back(a);
    CloseBatch();
    return absl::OkStatus();
  }

  absl::Status ParseBatch(int rank) {
    ++pos_;  // '['
    saw_batch_ = true;
    const int batch = static_cast<int>(out_->batches.size());
    out_->batches.push_back({-1});
    open_batch_ = true;
    while (true) {
      Op op;
      if (Consume("SF")) {
        op = Op::kSendF;
      } else if (Consume("RF")) {
        op = Op::kRecvF;
      } else if (Consume("SB")) {
        op = Op::kSendB;
      } else if (Consume("RB")) {
        op = Op::kRecvB;
      } else {
        return Error("expected a send or receive (SF, RF, SB, RB)");
      }
      int stage, dir, mb, peer;
      if (absl::Status st = Part(rank, &stage, &dir, &mb); !st.ok()) return st;
      if (!Consume("@")) return Error("expected '@<peer>'");
      if (!Number(&peer) || peer >= s_.ranks) {
        return Error(absl::StrFormat("expected a peer rank below %d", s_.ranks));
      }
      out_->actions.push_back(Action::Comm(op, stage, mb, dir, peer, batch));
      if (Consume("]")) break;
      if (!Consume(",")) return Error("expected ',' or ']' in a batch");
    }
    return absl::OkStatus();
  }

  // A batch is waited on right before the next compute op (or at the end).
  void CloseBatch() {
    if (!open_batch_) return;
    for (Batch& b : out_->batches) {
      if (b.wait_before < 0) b.wait_before = static_cast<int32_t>(out_->actions.size()) - 1;
    }
    open_batch_ = false;
  }

 public:
  void Finish() {
    for (Batch& b : out_->batches) {
      if (b.wait_before < 0) b.wait_before = static_cast<int32_t>(out_->actions.size());
    }
  }

 private:
  const int line_;
  const absl::string_view text_;
  const Schedule& s_;
  RankProgram* out_;
  size_t pos_ = 0;
  bool saw_batch_ = false;
  bool open_batch_ = false;
};

absl::Status HeaderError(int line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrFormat("line %d column 1: %s", line, what));
}

// "# kind=K ranks=R microbatches=N [chunks=V]".
absl::Status ParseHeaderLine(int line, absl::string_view text, TraceHeader* h) {
  for (absl::string_view field : absl::StrSplit(text.substr(1), ' ', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(field, absl::MaxSplits('=', 1));
    int value = 0;
    if (kv.first == "kind") {
      absl::StatusOr<Kind> k = ParseKind(kv.second);
      if (!k.ok()) return HeaderError(line, k.status().message());
      h->kind = *k;
    } else if (kv.first == "ranks" || kv.first == "microbatches" || kv.first == "chunks") {
      if (!absl::SimpleAtoi(kv.second, &value) || value < 1 || value > (1 << 20)) {
        return HeaderError(line, absl::StrFormat("%s: expected a positive number, got '%s'", kv.first, kv.second));
      }
      (kv.first == "ranks" ? h->ranks : kv.first == "chunks" ? h->chunks : h->microbatches) = value;
    } else {
      return HeaderError(line, absl::StrFormat("unknown header field '%s'", kv.first));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Schedule> ParseTrace(absl::string_view text, const TraceHeader& given) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  while (!lines.empty() && absl::StripAsciiWhitespace(lines.back()).empty()) lines.pop_back();
  TraceHeader h = given;
  size_t first = 0;
  if (!lines.empty() && absl::StartsWith(lines[0], "#")) {
    if (absl::Status st = ParseHeaderLine(1, lines[0], &h); !st.ok()) return st;
    first = 1;
  }
  if (h.ranks < 1 || h.microbatches < 1) {
    return absl::InvalidArgumentError(
        "trace: kind, ranks and microbatches are needed (flags or a first line "
        "'# kind=K ranks=R microbatches=N')");
  }
  if (lines.size() - first != static_cast<size_t>(h.ranks)) {
    return absl::InvalidArgumentError(absl::StrFormat("line %d column 1: expected %d rank lines, got %d",
                                                      lines.size() + 1, h.ranks, lines.size() - first));
  }
  // Chunks: given, or the largest chunk id used + 1 (scanned cheaply).
  int chunks = h.chunks;
  if (chunks == 0) {
    chunks = FixedChunks(h.kind);
    if (chunks == 0) {
      chunks = 1;
      for (size_t i = first; i < lines.size(); ++i) {
        const absl::string_view l = lines[i];
        for (size_t p = 1; p < l.size(); ++p) {
          if (l[p] == '.' && absl::ascii_isdigit(l[p - 1])) {
            size_t q = p;
            while (q > 0 && absl::ascii_isdigit(l[q - 1])) --q;
            int c = 0;
            if (p - q < 6 && absl::SimpleAtoi(l.substr(q, p - q), &c)) chunks = std::max(chunks, c + 1);
          }
        }
      }
    }
  }
  absl::StatusOr<Schedule> shell = MakeShell(h.kind, h.ranks, h.microbatches, chunks);
  if (!shell.ok()) return shell.status();
  Schedule s = *std::move(shell);
  bool lowered = false;
  for (int r = 0; r < h.ranks; ++r) {
    const int line = static_cast<int>(first) + r + 1;
    TraceParser parser(line, lines[first + r], s, &s.programs[r]);
    if (absl::Status st = parser.ParseRankLine(r); !st.ok()) return st;
    parser.Finish();
    lowered = lowered || parser.saw_batch();
  }
  s.lowered = lowered;
  return s;
}

}  // namespace tandem::schedule
