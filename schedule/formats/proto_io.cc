#include "schedule/formats/proto_io.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"

namespace tandem::schedule {
namespace {

// Ops map 1:1 onto proto enum values 1..9.
proto::Op OpToProto(Op op) { return static_cast<proto::Op>(static_cast<int>(op) + 1); }

absl::Status FieldError(absl::string_view path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

absl::Status Range(absl::string_view path, int64_t lo, int64_t hi, int64_t got) {
  if (got >= lo && got <= hi) return absl::OkStatus();
  return FieldError(path, absl::StrFormat("expected %d..%d, got %d", lo, hi, got));
}

}  // namespace

proto::Schedule ToProto(const Schedule& s) {
  proto::Schedule p;
  p.set_kind(std::string(KindName(s.kind)));
  p.set_ranks(s.ranks);
  p.set_stages(s.stages);
  p.set_microbatches(s.microbatches);
  p.set_directions(s.directions);
  p.set_chunks(s.chunks);
  p.set_lowered(s.lowered);
  for (int i = 0; i < static_cast<int>(s.placement.size()); ++i) {
    proto::Placement* pl = p.add_placements();
    pl->set_stage(i % s.stages);
    pl->set_direction(i / s.stages);
    pl->set_rank(s.placement[i].rank);
    pl->set_chunk(s.placement[i].chunk);
  }
  for (const RankProgram& rp : s.programs) {
    proto::RankProgram* out = p.add_programs();
    out->mutable_actions()->Reserve(rp.actions.size());
    for (const Action& a : rp.actions) {
      proto::Action* pa = out->add_actions();
      pa->set_op(OpToProto(a.op));
      pa->set_stage(a.stage);
      pa->set_microbatch(a.mb);
      pa->set_direction(a.direction);
      if (a.op == Op::kForwardBackward) {
        pa->set_stage_b(a.stage_b);
        pa->set_microbatch_b(a.mb_b);
        pa->set_direction_b(a.direction_b);
      }
      if (IsComm(a.op)) {
        pa->set_peer(a.peer);
        pa->set_batch(a.batch);
      }
    }
    for (const Batch& b : rp.batches) out->add_batches()->set_wait_before(b.wait_before);
  }
  return p;
}

absl::StatusOr<Schedule> FromProto(const proto::Schedule& p) {
  constexpr int kMax = 1 << 20;
  Schedule s;
  TANDEM_ASSIGN_OR_RETURN(s.kind, ParseKind(p.kind()));
  TANDEM_RETURN_IF_ERROR(Range("ranks", 1, kMax, p.ranks()));
  TANDEM_RETURN_IF_ERROR(Range("stages", 1, kMax, p.stages()));
  TANDEM_RETURN_IF_ERROR(Range("directions", 1, 2, p.directions()));
  TANDEM_RETURN_IF_ERROR(Range("microbatches", 1, kMax, p.microbatches()));
  TANDEM_RETURN_IF_ERROR(Range("chunks", 1, kMax, p.chunks()));
  s.ranks = p.ranks();
  s.stages = p.stages();
  s.directions = p.directions();
  s.microbatches = p.microbatches();
  s.chunks = p.chunks();
  s.lowered = p.lowered();
  if (int64_t{s.directions} * s.stages != p.placements_size()) {
    return FieldError("placements", absl::StrFormat("expected %d entries (directions x stages), got %d",
                                                    s.directions * s.stages, p.placements_size()));
  }
  s.placement.assign(p.placements_size(), {-1, -1});
  for (int i = 0; i < p.placements_size(); ++i) {
    const proto::Placement& pl = p.placements(i);
    const std::string path = absl::StrCat("placements[", i, "]");
    TANDEM_RETURN_IF_ERROR(Range(path + ".stage", 0, s.stages - 1, pl.stage()));
    TANDEM_RETURN_IF_ERROR(Range(path + ".direction", 0, s.directions - 1, pl.direction()));
    Placement& slot = s.placement[pl.direction() * s.stages + pl.stage()];
    if (slot.rank >= 0) return FieldError(path, "stage and direction placed twice");
    slot = {pl.rank(), pl.chunk()};
  }
  if (p.programs_size() != s.ranks) {
    return FieldError("programs", absl::StrFormat("expected one per rank (%d), got %d", s.ranks, p.programs_size()));
  }
  s.programs.resize(s.ranks);
  for (int r = 0; r < s.ranks; ++r) {
    const proto::RankProgram& in = p.programs(r);
    RankProgram& out = s.programs[r];
    out.actions.reserve(in.actions_size());
    const int m = s.microbatches_per_direction();
    for (int k = 0; k < in.actions_size(); ++k) {
      const proto::Action& pa = in.actions(k);
      // The field path is built only for an error.
      auto check = [&](const char* field, int64_t lo, int64_t hi, int64_t got) {
        return got >= lo && got <= hi ? absl::OkStatus()
                                      : Range(absl::StrCat("programs[", r, "].actions[", k, "].", field), lo, hi, got);
      };
      TANDEM_RETURN_IF_ERROR(check("op", 1, 9, pa.op()));
      TANDEM_RETURN_IF_ERROR(check("stage", 0, s.stages - 1, pa.stage()));
      TANDEM_RETURN_IF_ERROR(check("microbatch", 0, m - 1, pa.microbatch()));
      TANDEM_RETURN_IF_ERROR(check("direction", 0, s.directions - 1, pa.direction()));
      Action a = Action::Compute(static_cast<Op>(pa.op() - 1), pa.stage(), pa.microbatch(), pa.direction());
      if (a.op == Op::kForwardBackward) {
        TANDEM_RETURN_IF_ERROR(check("stage_b", 0, s.stages - 1, pa.stage_b()));
        TANDEM_RETURN_IF_ERROR(check("microbatch_b", 0, m - 1, pa.microbatch_b()));
        TANDEM_RETURN_IF_ERROR(check("direction_b", 0, s.directions - 1, pa.direction_b()));
        a = Action::Overlap(pa.stage(), pa.microbatch(), pa.direction(), pa.stage_b(), pa.microbatch_b(),
                            pa.direction_b());
      }
      if (IsComm(a.op)) {
        if (!s.lowered) {
          return FieldError(absl::StrCat("programs[", r, "].actions[", k, "]"),
                            "send or receive in a schedule that is not lowered");
        }
        TANDEM_RETURN_IF_ERROR(check("peer", 0, s.ranks - 1, pa.peer()));
        TANDEM_RETURN_IF_ERROR(check("batch", 0, in.batches_size() - 1, pa.batch()));
        a.peer = pa.peer();
        a.batch = pa.batch();
      }
      out.actions.push_back(a);
    }
    out.batches.reserve(in.batches_size());
    for (int b = 0; b < in.batches_size(); ++b) {
      const int32_t wait = in.batches(b).wait_before();
      if (wait < 0 || wait > in.actions_size()) {
        return Range(absl::StrCat("programs[", r, "].batches[", b, "].wait_before"), 0, in.actions_size(), wait);
      }
      out.batches.push_back({wait});
    }
  }
  TANDEM_RETURN_IF_ERROR(CheckShape(s));
  return s;
}

std::string FormatBinaryProto(const Schedule& s) { return ToProto(s).SerializeAsString(); }

std::string FormatTextProto(const Schedule& s) {
  std::string out;
  google::protobuf::TextFormat::PrintToString(ToProto(s), &out);
  return out;
}

std::string FormatJson(const Schedule& s) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.always_print_primitive_fields = false;
  (void)google::protobuf::util::MessageToJsonString(ToProto(s), &out, options);
  return out + "\n";
}

bool LooksBinary(absl::string_view data) {
  for (char c : data) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x09 || (u > 0x0d && u < 0x20) || u == 0x7f) return true;
  }
  return false;
}

absl::StatusOr<Schedule> ParseBinaryProto(absl::string_view bytes) {
  proto::Schedule p;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  if (!p.MergePartialFromCodedStream(&in) || !in.ConsumedEntireMessage()) {
    return absl::InvalidArgumentError(absl::StrFormat("binary schedule: malformed wire data at byte offset %d of %d",
                                                      in.CurrentPosition(), bytes.size()));
  }
  return FromProto(p);
}

namespace {

class Collector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (first_.empty()) first_ = absl::StrFormat("line %d column %d: %s", line + 1, column + 1, message);
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

}  // namespace

absl::StatusOr<Schedule> ParseTextProto(absl::string_view text) {
  proto::Schedule p;
  google::protobuf::TextFormat::Parser parser;
  Collector errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(std::string(text), &p)) {
    return absl::InvalidArgumentError(absl::StrCat("text schedule: ", errors.first()));
  }
  return FromProto(p);
}

absl::StatusOr<Schedule> ParseJson(absl::string_view text) {
  proto::Schedule p;
  const auto st = google::protobuf::util::JsonStringToMessage(std::string(text), &p);
  if (!st.ok()) {
    // protobuf reports a byte position in the message; turn it into a line
    // and column when it does.
    return absl::InvalidArgumentError(absl::StrCat("json schedule: ", std::string(st.message())));
  }
  return FromProto(p);
}

}  // namespace tandem::schedule
