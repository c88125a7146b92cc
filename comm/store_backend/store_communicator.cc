#include "comm/store_backend/store_communicator.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "comm/flight_recorder.h"
#include "comm/in_order.h"
#include "comm/store/wire.h"

namespace tandem::comm {
namespace {

// What every rank of a collective must agree on, sent with the data.
struct Header {
  int64_t op =
      0;  // 1 all_reduce, 2 all_gather, 3 reduce_scatter, 4 broadcast, 5 all_to_all, 6 all_to_all_v, 7 barrier, 8 split
  int64_t dtype = 0;
  int64_t count = 0;
  int64_t extra = 0;  // reduce op or root
};

const char* kOpNames[] = {"?",          "all_reduce",   "all_gather", "reduce_scatter", "broadcast",
                          "all_to_all", "all_to_all_v", "barrier",    "split"};

// A peer's op and dtype may be anything: out-of-range values print as "?".
const char* OpName(int64_t op) { return op >= 1 && op <= 8 ? kOpNames[op] : "?"; }
absl::string_view DtypeName(int64_t t) {
  return t >= 0 && t <= static_cast<int64_t>(DataType::kBytes) ? DataTypeName(static_cast<DataType>(t)) : "?";
}

std::string Describe(const Header& h) {
  return absl::StrFormat("%s %s x%d", OpName(h.op), DtypeName(h.dtype), h.count);
}

// A posted operation, completed in order by Wait().
struct Op {
  int64_t seq = 0;
  std::string name;
  bool done = false;
  absl::Status status;
  // P2P receives: key and destination.
  struct Recv {
    std::string key;
    P2POp op;
  };
  std::vector<Recv> recvs;
  size_t recvs_done = 0;
  // P2P sends: the key the receiver acknowledges, and the peer.
  std::vector<std::pair<std::string, int>> sends;
  size_t sends_done = 0;
  // Collective.
  bool collective = false;
  int64_t coll = -1;
  Header header;
  const void* send = nullptr;
  void* recv = nullptr;
  std::vector<int64_t> recv_counts;
  std::vector<std::string> gathered;  // split: every rank's "color key"
};

class StoreCommunicator;
using StoreWork = InOrderWork<StoreCommunicator, Op>;

class StoreCommunicator : public Communicator {
 public:
  StoreCommunicator(Store* store, int rank, int size, std::string prefix, std::shared_ptr<void> keepalive)
      : store_(store),
        keepalive_(std::move(keepalive)),
        rank_(rank),
        size_(size),
        prefix_(std::move(prefix)),
        sent_(size, 0),
        received_(size, 0) {}

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  absl::string_view backend() const override { return "store"; }

  absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key, Deadline deadline) override {
    Header h{8, 0, 0, 0};
    TANDEM_ASSIGN_OR_RETURN(std::shared_ptr<Op> op, Post(h, absl::StrCat(color, " ", key), nullptr, nullptr, {}));
    TANDEM_RETURN_IF_ERROR(Progress(op.get(), deadline));
    if (color < 0) return std::unique_ptr<Communicator>();
    std::vector<std::pair<int, int>> members;
    for (int r = 0; r < size_; ++r) {
      int c = 0, k = 0;
      if (std::sscanf(op->gathered[r].c_str(), "%d %d", &c, &k) == 2 && c == color) members.emplace_back(k, r);
    }
    std::sort(members.begin(), members.end());
    const int new_rank =
        static_cast<int>(std::find(members.begin(), members.end(), std::make_pair(key, rank_)) - members.begin());
    return MakeStoreCommunicator(store_, new_rank, static_cast<int>(members.size()),
                                 absl::StrCat(prefix_, "s", op->coll, ".", color, "/"), keepalive_);
  }

  WorkOr SendRecv(absl::Span<const P2POp> ops) override {
    for (const P2POp& p : ops) {
      const char* name = p.kind == P2POp::Kind::kSend ? "send" : "recv";
      TANDEM_RETURN_IF_ERROR(CheckPeer(name, p.peer, size_));
      TANDEM_RETURN_IF_ERROR(CheckCount(name, p.count, p.data));
    }
    auto op = std::make_shared<Op>();
    op->seq = next_seq_++;
    std::vector<std::string> parts;
    for (const P2POp& p : ops) {
      if (p.kind == P2POp::Kind::kSend) {
        // Buffered: the message is in the store once posted.
        std::string value;
        wire::PutInt(p.count, &value);
        wire::PutInt(static_cast<int64_t>(p.dtype), &value);
        value.append(static_cast<const char*>(p.data), p.count * SizeOf(p.dtype));
        const int64_t k = sent_[p.peer]++;
        const std::string key = absl::StrCat(prefix_, "p/", rank_, "/", p.peer, "/", k);
        TANDEM_RETURN_IF_ERROR(store_->Set(key, value));
        op->sends.emplace_back(key + "/ack", p.peer);
        parts.push_back(absl::StrFormat("send #%d to %d", k, p.peer));
      } else {
        const int64_t k = received_[p.peer]++;
        op->recvs.push_back({absl::StrCat(prefix_, "p/", p.peer, "/", rank_, "/", k), p});
        parts.push_back(absl::StrFormat("recv #%d from %d", k, p.peer));
      }
    }
    op->name = absl::StrCat("send_recv [", absl::StrJoin(parts, ", "), "]");
    recorder_.Posted(op->seq, op->name);
    pending_.push_back(op);
    return std::unique_ptr<Work>(new StoreWork(this, op));
  }

  WorkOr AllReduce(const void* send, void* recv, int64_t count, DataType t, ReduceOp op) override {
    TANDEM_RETURN_IF_ERROR(CheckReducible("all_reduce", t));
    TANDEM_RETURN_IF_ERROR(CheckCount("all_reduce", count, send));
    TANDEM_RETURN_IF_ERROR(CheckCount("all_reduce", count, recv));
    return Wrap(Post({1, static_cast<int64_t>(t), count, static_cast<int64_t>(op)}, Bytes(send, count * SizeOf(t)),
                     send, recv, {}));
  }
  WorkOr AllGather(const void* send, void* recv, int64_t count, DataType t) override {
    TANDEM_RETURN_IF_ERROR(CheckCount("all_gather", count, send));
    TANDEM_RETURN_IF_ERROR(CheckCount("all_gather", count, recv));
    return Wrap(Post({2, static_cast<int64_t>(t), count, 0}, Bytes(send, count * SizeOf(t)), send, recv, {}));
  }
  WorkOr ReduceScatter(const void* send, void* recv, int64_t count, DataType t, ReduceOp op) override {
    TANDEM_RETURN_IF_ERROR(CheckReducible("reduce_scatter", t));
    TANDEM_RETURN_IF_ERROR(CheckCount("reduce_scatter", count, send));
    TANDEM_RETURN_IF_ERROR(CheckCount("reduce_scatter", count, recv));
    return Wrap(Post({3, static_cast<int64_t>(t), count, static_cast<int64_t>(op)},
                     Bytes(send, size_ * count * SizeOf(t)), send, recv, {}));
  }
  WorkOr Broadcast(void* buffer, int64_t count, DataType t, int root) override {
    TANDEM_RETURN_IF_ERROR(CheckPeer("broadcast root", root, size_));
    TANDEM_RETURN_IF_ERROR(CheckCount("broadcast", count, buffer));
    return Wrap(Post({4, static_cast<int64_t>(t), count, root},
                     rank_ == root ? Bytes(buffer, count * SizeOf(t)) : std::string(), buffer, buffer, {}));
  }
  WorkOr AllToAll(const void* send, void* recv, int64_t count, DataType t) override {
    TANDEM_RETURN_IF_ERROR(CheckCount("all_to_all", count, send));
    TANDEM_RETURN_IF_ERROR(CheckCount("all_to_all", count, recv));
    if (count > 0 && send == recv && size_ > 1) {
      return absl::InvalidArgumentError("all_to_all: in-place (send == recv) is not supported");
    }
    return Wrap(Post({5, static_cast<int64_t>(t), count, 0}, Bytes(send, size_ * count * SizeOf(t)), send, recv, {}));
  }
  WorkOr AllToAllV(const void* send, absl::Span<const int64_t> send_counts, void* recv,
                   absl::Span<const int64_t> recv_counts, DataType t) override {
    TANDEM_RETURN_IF_ERROR(CheckAllToAllV(send, send_counts, recv, recv_counts, size_));
    std::string payload;
    int64_t total = 0;
    for (int p = 0; p < size_; ++p) {
      wire::PutInt(send_counts[p], &payload);
      total += send_counts[p];
    }
    payload += Bytes(send, total * SizeOf(t));
    return Wrap(Post({6, static_cast<int64_t>(t), 0, 0}, payload, send, recv,
                     std::vector<int64_t>(recv_counts.begin(), recv_counts.end())));
  }
  WorkOr Barrier() override { return Wrap(Post({7, 0, 0, 0}, "", nullptr, nullptr, {})); }

  absl::Status Progress(Op* target, Deadline deadline) {
    return CompleteInOrder(&pending_, target, deadline, &recorder_, rank_, [this](Op* op, Deadline d) {
      return op->collective ? CompleteCollective(op, d) : CompleteP2P(op, d);
    });
  }

 private:
  static std::string Bytes(const void* p, int64_t n) {
    return n > 0 ? std::string(static_cast<const char*>(p), n) : std::string();
  }
  WorkOr Wrap(absl::StatusOr<std::shared_ptr<Op>> op) {
    if (!op.ok()) return op.status();
    return std::unique_ptr<Work>(new StoreWork(this, *std::move(op)));
  }
  std::string CollKey(int64_t coll, absl::string_view what) const {
    return absl::StrCat(prefix_, "c/", coll, "/", what);
  }

  absl::StatusOr<std::shared_ptr<Op>> Post(const Header& h, const std::string& payload, const void* send, void* recv,
                                           std::vector<int64_t> recv_counts) {
    auto op = std::make_shared<Op>();
    op->seq = next_seq_++;
    op->collective = true;
    op->coll = next_coll_++;
    op->header = h;
    op->send = send;
    op->recv = recv;
    op->recv_counts = std::move(recv_counts);
    op->name = absl::StrFormat("%s (collective #%d)", Describe(h), op->coll);
    std::string value;
    for (int64_t x : {h.op, h.dtype, h.count, h.extra}) wire::PutInt(x, &value);
    value += payload;
    TANDEM_RETURN_IF_ERROR(store_->Set(CollKey(op->coll, absl::StrCat(rank_)), value));
    recorder_.Posted(op->seq, op->name);
    pending_.push_back(op);
    return op;
  }

  absl::Status Timeout(const Op& op, Deadline deadline, absl::string_view waiting) const {
    return absl::DeadlineExceededError(absl::StrFormat("%s seq %d on rank %d: deadline %s exceeded; %s", op.name,
                                                       op.seq, rank_, absl::FormatDuration(deadline.timeout()),
                                                       waiting));
  }

  // Another error of the store during `op`; a deadline error (a request the
  // store's host never answered) gets Timeout()'s prefix too.
  absl::Status StoreError(const Op& op, Deadline deadline, const absl::Status& s) const {
    return absl::IsDeadlineExceeded(s) ? Timeout(op, deadline, s.message()) : s;
  }

  // Receives first (each acknowledged with its outcome), then the sends'
  // acknowledgements: a send completes once its receiver has it.
  absl::Status CompleteP2P(Op* op, Deadline deadline) {
    for (; op->recvs_done < op->recvs.size(); ++op->recvs_done) {
      const Op::Recv& r = op->recvs[op->recvs_done];
      absl::StatusOr<std::string> v = store_->Get(r.key, deadline);
      if (IsStoreTimeout(v.status())) {
        return Timeout(*op, deadline, absl::StrFormat("waiting for rank %d to post its send", r.op.peer));
      }
      if (!v.ok()) return StoreError(*op, deadline, v.status());
      TANDEM_RETURN_IF_ERROR(store_->Delete(r.key).status());
      wire::Reader in(*v);
      int64_t count = 0, dtype = 0;
      const bool header = in.Int(&count) && in.Int(&dtype);
      const int64_t bytes = r.op.count * SizeOf(r.op.dtype);
      std::string problem;
      if (!header) {
        problem = absl::StrFormat("message from rank %d to rank %d: truncated header (%d bytes)", r.op.peer, rank_,
                                  v->size());
      } else if (count != r.op.count || dtype != static_cast<int64_t>(r.op.dtype)) {
        problem = absl::StrFormat("message from rank %d to rank %d: ranks disagree: sent %d %s, receive expects %d %s",
                                  r.op.peer, rank_, count, DtypeName(dtype), r.op.count, DataTypeName(r.op.dtype));
      } else if (static_cast<int64_t>(v->size()) - 16 != bytes) {
        problem = absl::StrFormat("message from rank %d to rank %d: expected %d bytes of data, got %d", r.op.peer,
                                  rank_, bytes, static_cast<int64_t>(v->size()) - 16);
      }
      if (!problem.empty()) {
        if (op->status.ok()) op->status = absl::InvalidArgumentError(problem);
      } else if (r.op.count > 0) {
        std::memcpy(r.op.data, v->data() + 16, r.op.count * SizeOf(r.op.dtype));
      }
      TANDEM_RETURN_IF_ERROR(store_->Set(r.key + "/ack", problem));
    }
    for (; op->sends_done < op->sends.size(); ++op->sends_done) {
      const auto& [ack, peer] = op->sends[op->sends_done];
      absl::StatusOr<std::string> v = store_->Get(ack, deadline);
      if (IsStoreTimeout(v.status())) {
        return Timeout(*op, deadline, absl::StrFormat("waiting for rank %d to receive its message", peer));
      }
      if (!v.ok()) return StoreError(*op, deadline, v.status());
      TANDEM_RETURN_IF_ERROR(store_->Delete(ack).status());
      if (!v->empty() && op->status.ok()) op->status = absl::InvalidArgumentError(*v);
    }
    return op->status;
  }

  absl::Status CompleteCollective(Op* op, Deadline deadline) {
    std::vector<std::string> keys;
    for (int r = 0; r < size_; ++r) keys.push_back(CollKey(op->coll, absl::StrCat(r)));
    absl::Status waited = store_->Wait(keys, deadline);
    if (IsStoreTimeout(waited)) {
      // The store names the missing contributions with its timeout: asking
      // it again could fail once its host has gone.
      const std::vector<std::string> absent = MissingKeys(waited);
      std::vector<int> missing;
      for (int r = 0; r < size_; ++r) {
        if (std::find(absent.begin(), absent.end(), keys[r]) != absent.end()) missing.push_back(r);
      }
      return Timeout(*op, deadline, absl::StrFormat("waiting for ranks [%s] to post it", absl::StrJoin(missing, ", ")));
    }
    if (!waited.ok()) return StoreError(*op, deadline, waited);
    // Every contribution: header, then payload.
    std::vector<std::string> values(size_);
    std::vector<Header> headers(size_);
    absl::Status status;
    for (int r = 0; r < size_; ++r) {
      TANDEM_ASSIGN_OR_RETURN(values[r], store_->Get(keys[r], deadline));
      wire::Reader in(values[r]);
      Header& h = headers[r];
      if (!(in.Int(&h.op) && in.Int(&h.dtype) && in.Int(&h.count) && in.Int(&h.extra)) && status.ok()) {
        status = absl::InvalidArgumentError(absl::StrFormat(
            "collective #%d: rank %d's contribution: truncated header (%d bytes)", op->coll, r, values[r].size()));
      }
      // Every rank compares with rank 0, so all report the same message.
      const Header& first = headers[0];
      if (status.ok() &&
          (h.op != first.op || h.dtype != first.dtype || h.count != first.count || h.extra != first.extra)) {
        status = absl::InvalidArgumentError(
            absl::StrFormat("collective #%d: ranks disagree: rank 0 called %s, rank %d called %s", op->coll,
                            Describe(first), r, Describe(h)));
      }
      values[r].erase(0, std::min<size_t>(32, values[r].size()));
    }
    // Every header equals this rank's own: each payload must be the size
    // that header implies before anything reads it.
    for (int r = 0; r < size_ && status.ok(); ++r) status = CheckPayload(*op, r, values[r]);
    if (status.ok()) status = Apply(op, values);
    // Release: the last reader frees the contributions' bookkeeping.
    TANDEM_ASSIGN_OR_RETURN(int64_t readers, store_->Add(CollKey(op->coll, "read"), 1));
    if (readers == size_) {
      for (const std::string& k : keys) TANDEM_RETURN_IF_ERROR(store_->Delete(k).status());
      TANDEM_RETURN_IF_ERROR(store_->Delete(CollKey(op->coll, "read")).status());
    }
    return status;
  }

  // kInvalidArgument unless rank r's payload `v` is exactly what this
  // rank's own header implies (all_to_all_v: its counts, then their data).
  absl::Status CheckPayload(const Op& op, int r, const std::string& v) const {
    const Header& h = op.header;
    const int64_t es = SizeOf(static_cast<DataType>(h.dtype));
    const int64_t got = static_cast<int64_t>(v.size());
    int64_t want = 0;
    switch (h.op) {
      case 1:  // all_reduce
      case 2:  // all_gather
        want = h.count * es;
        break;
      case 3:  // reduce_scatter
      case 5:  // all_to_all
        want = size_ * h.count * es;
        break;
      case 4:  // broadcast: the root's data only
        want = r == h.extra ? h.count * es : 0;
        break;
      case 6: {  // all_to_all_v
        wire::Reader in(v);
        want = size_ * 8;
        for (int q = 0; q < size_; ++q) {
          int64_t c = 0;
          if (!in.Int(&c) || c < 0 || c > got / es) {
            return absl::InvalidArgumentError(
                absl::StrFormat("collective #%d (all_to_all_v): rank %d's contribution: count for rank %d is missing "
                                "or out of range (%d, with %d bytes sent)",
                                op.coll, r, q, c, got));
          }
          want += c * es;
        }
        break;
      }
      case 8:  // split: "color key", parsed with a check
        return absl::OkStatus();
      default:  // barrier
        break;
    }
    if (got != want) {
      return absl::InvalidArgumentError(
          absl::StrFormat("collective #%d (%s): rank %d's contribution: expected %d bytes of data, got %d", op.coll,
                          OpName(h.op), r, want, got));
    }
    return absl::OkStatus();
  }

  absl::Status Apply(Op* op, const std::vector<std::string>& v) {
    const Header& h = op->header;
    const DataType t = static_cast<DataType>(h.dtype);
    const int64_t es = SizeOf(t);
    char* out = static_cast<char*>(op->recv);
    switch (h.op) {
      case 1:    // all_reduce, rank order
      case 3: {  // reduce_scatter: my block
        const int64_t n = h.count, offset = h.op == 3 ? rank_ * n * es : 0;
        if (n == 0) return absl::OkStatus();
        std::vector<char> acc(v[0].begin() + offset, v[0].begin() + offset + n * es);
        for (int r = 1; r < size_; ++r) {
          ReduceInto(t, static_cast<ReduceOp>(h.extra), acc.data(), v[r].data() + offset, n);
        }
        if (static_cast<ReduceOp>(h.extra) == ReduceOp::kAvg) FinishAverage(t, acc.data(), n, size_);
        std::memcpy(out, acc.data(), n * es);
        return absl::OkStatus();
      }
      case 2:  // all_gather
        for (int r = 0; r < size_; ++r) {
          if (h.count > 0) std::memcpy(out + r * h.count * es, v[r].data(), h.count * es);
        }
        return absl::OkStatus();
      case 4:  // broadcast
        if (rank_ != h.extra && h.count > 0) std::memcpy(out, v[h.extra].data(), h.count * es);
        return absl::OkStatus();
      case 5:  // all_to_all
        for (int r = 0; r < size_; ++r) {
          if (h.count > 0) std::memcpy(out + r * h.count * es, v[r].data() + rank_ * h.count * es, h.count * es);
        }
        return absl::OkStatus();
      case 6: {  // all_to_all_v
        int64_t at = 0;
        for (int r = 0; r < size_; ++r) {
          wire::Reader in(v[r]);
          std::vector<int64_t> counts(size_);
          for (int64_t& c : counts) in.Int(&c);
          if (counts[rank_] != op->recv_counts[r]) {
            return absl::InvalidArgumentError(
                absl::StrFormat("all_to_all_v: ranks disagree: rank %d sends %d elements to rank %d, which expects %d",
                                r, counts[rank_], rank_, op->recv_counts[r]));
          }
          int64_t offset = size_ * 8;
          for (int q = 0; q < rank_; ++q) offset += counts[q] * es;
          if (counts[rank_] > 0) std::memcpy(out + at * es, v[r].data() + offset, counts[rank_] * es);
          at += counts[rank_];
        }
        return absl::OkStatus();
      }
      case 8:  // split
        op->gathered = v;
        return absl::OkStatus();
      default:
        return absl::OkStatus();
    }
  }

  Store* store_;
  std::shared_ptr<void> keepalive_;
  const int rank_, size_;
  const std::string prefix_;
  std::vector<int64_t> sent_, received_;  // per peer message counters
  int64_t next_seq_ = 0, next_coll_ = 0;
  std::deque<std::shared_ptr<Op>> pending_;
  FlightRecorder recorder_;
};

}  // namespace

std::unique_ptr<Communicator> MakeStoreCommunicator(Store* store, int rank, int size, const std::string& prefix,
                                                    std::shared_ptr<void> keepalive) {
  return std::make_unique<StoreCommunicator>(store, rank, size, prefix, std::move(keepalive));
}

}  // namespace tandem::comm
