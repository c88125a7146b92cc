#include "comm/local/local_communicator.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "base/status_macros.h"
#include "comm/flight_recorder.h"
#include "comm/in_order.h"

namespace tandem::comm {
namespace {

enum class OpType : uint8_t {
  kSendRecv,
  kAllReduce,
  kAllGather,
  kReduceScatter,
  kBroadcast,
  kAllToAll,
  kAllToAllV,
  kBarrier,
  kSplit,
};

const char* OpName(OpType t) {
  switch (t) {
    case OpType::kSendRecv:
      return "send_recv";
    case OpType::kAllReduce:
      return "all_reduce";
    case OpType::kAllGather:
      return "all_gather";
    case OpType::kReduceScatter:
      return "reduce_scatter";
    case OpType::kBroadcast:
      return "broadcast";
    case OpType::kAllToAll:
      return "all_to_all";
    case OpType::kAllToAllV:
      return "all_to_all_v";
    case OpType::kBarrier:
      return "barrier";
    case OpType::kSplit:
      return "split";
  }
  return "?";
}

// What every rank of a collective must agree on.
struct Fingerprint {
  OpType op;
  DataType dtype = DataType::kBytes;
  int64_t count = 0;
  ReduceOp reduce = ReduceOp::kSum;
  int root = 0;

  bool operator==(const Fingerprint& o) const {
    return op == o.op && dtype == o.dtype && count == o.count && reduce == o.reduce && root == o.root;
  }
  std::string ToString() const {
    return absl::StrFormat("%s %s x%d%s", OpName(op), DataTypeName(dtype), count,
                           op == OpType::kBroadcast ? absl::StrCat(" root ", root) : "");
  }
};

struct World;

// One collective call, shared by the ranks (keyed by collective sequence).
struct Collective {
  struct Slot {
    bool present = false;
    bool waiting = false;  // the rank is inside Wait() for it
    bool claimed = false;  // some rank runs (or ran) this rank's part
    Fingerprint fp;
    const void* send = nullptr;
    void* recv = nullptr;
    std::vector<int64_t> send_counts, recv_counts, send_offsets;
    int color = 0, key = 0;
  };
  explicit Collective(int n) : slots(n) {}
  std::vector<Slot> slots;
  int arrived = 0, done = 0, left = 0;
  absl::Status mismatch;
  std::map<int, std::shared_ptr<World>> split_worlds;
};

// One point-to-point message: the k-th send from src to dst and the k-th
// receive there. Whichever side posts second moves the data, so a message
// moves without either side waiting.
struct Message {
  int src = 0, dst = 0;
  int64_t index = 0;
  const void* send = nullptr;
  int64_t send_count = 0;
  DataType send_dtype = DataType::kBytes;
  void* recv = nullptr;
  int64_t recv_count = 0;
  DataType recv_dtype = DataType::kBytes;
  bool sent = false, received = false;  // posted
  bool done = false;                    // moved, or refused
  absl::Status status;
};

struct Channel {
  absl::flat_hash_map<int64_t, std::shared_ptr<Message>> open;  // by index, until both sides posted
  int64_t sends_posted = 0;
  int64_t recvs_posted = 0;
};

struct World {
  explicit World(int n) : size(n), channels(int64_t{n} * n) {}
  const int size;
  absl::Mutex mu;
  absl::flat_hash_map<int64_t, std::shared_ptr<Collective>> collectives ABSL_GUARDED_BY(mu);
  std::vector<Channel> channels ABSL_GUARDED_BY(mu);  // [src * size + dst]
};

// A posted operation of one rank.
struct Op {
  int64_t seq;
  std::string name;
  bool done = false;
  absl::Status status;
  // Point to point: its messages, receives first (progress kept across
  // timeouts).
  std::vector<std::shared_ptr<Message>> messages;
  size_t messages_done = 0;
  // Collective.
  std::shared_ptr<Collective> coll;
  int64_t coll_seq = -1;
};

class LocalCommunicator;
using LocalWork = InOrderWork<LocalCommunicator, Op>;

std::string RankList(const std::vector<int>& ranks) { return absl::StrCat("[", absl::StrJoin(ranks, ", "), "]"); }

class LocalCommunicator : public Communicator {
 public:
  LocalCommunicator(std::shared_ptr<World> world, int rank) : world_(std::move(world)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return world_->size; }
  absl::string_view backend() const override { return "local"; }

  absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key, Deadline deadline) override {
    Collective::Slot slot;
    slot.fp = {OpType::kSplit};
    slot.color = color;
    slot.key = key;
    TANDEM_ASSIGN_OR_RETURN(std::shared_ptr<Op> op, PostCollective(std::move(slot), "split"));
    TANDEM_RETURN_IF_ERROR(Progress(op.get(), deadline));
    if (color < 0) return std::unique_ptr<Communicator>();
    // Members of my color ranked by (key, parent rank).
    const std::vector<Collective::Slot>& slots = op->coll->slots;
    std::vector<std::pair<int, int>> members;
    for (int r = 0; r < size(); ++r) {
      if (slots[r].color == color) members.emplace_back(slots[r].key, r);
    }
    std::sort(members.begin(), members.end());
    const int new_rank =
        static_cast<int>(std::find(members.begin(), members.end(), std::make_pair(key, rank_)) - members.begin());
    std::shared_ptr<World> world;
    {
      absl::MutexLock lock(&world_->mu);
      std::shared_ptr<World>& w = op->coll->split_worlds[color];
      if (w == nullptr) w = std::make_shared<World>(static_cast<int>(members.size()));
      world = w;
    }
    return std::unique_ptr<Communicator>(new LocalCommunicator(std::move(world), new_rank));
  }

  WorkOr SendRecv(absl::Span<const P2POp> ops) override {
    for (const P2POp& p : ops) {
      const char* name = p.kind == P2POp::Kind::kSend ? "send" : "recv";
      TANDEM_RETURN_IF_ERROR(CheckPeer(name, p.peer, size()));
      TANDEM_RETURN_IF_ERROR(CheckCount(name, p.count, p.data));
    }
    auto op = std::make_shared<Op>();
    op->seq = next_seq_++;
    std::vector<std::string> parts;
    std::vector<std::shared_ptr<Message>> ready, sends;
    {
      absl::MutexLock lock(&world_->mu);
      for (const P2POp& p : ops) {
        const bool send = p.kind == P2POp::Kind::kSend;
        const int src = send ? rank_ : p.peer, dst = send ? p.peer : rank_;
        Channel& ch = world_->channels[int64_t{src} * size() + dst];
        const int64_t index = send ? ch.sends_posted++ : ch.recvs_posted++;
        std::shared_ptr<Message>& slot = ch.open[index];
        if (slot == nullptr) {
          slot = std::make_shared<Message>();
          slot->src = src;
          slot->dst = dst;
          slot->index = index;
        }
        std::shared_ptr<Message> msg = slot;
        if (send) {
          msg->send = p.data;
          msg->send_count = p.count;
          msg->send_dtype = p.dtype;
          msg->sent = true;
          sends.push_back(msg);
        } else {
          msg->recv = p.data;
          msg->recv_count = p.count;
          msg->recv_dtype = p.dtype;
          msg->received = true;
          op->messages.push_back(msg);
        }
        if (msg->sent && msg->received) {
          ch.open.erase(index);
          ready.push_back(msg);
        }
        parts.push_back(absl::StrFormat(send ? "send #%d to %d" : "recv #%d from %d", index, p.peer));
      }
    }
    op->messages.insert(op->messages.end(), sends.begin(), sends.end());
    // The messages whose other side is already posted move now.
    for (const std::shared_ptr<Message>& m : ready) Move(*m);
    op->name = absl::StrCat("send_recv [", absl::StrJoin(parts, ", "), "]");
    recorder_.Posted(op->seq, op->name);
    pending_.push_back(op);
    return std::unique_ptr<Work>(new LocalWork(this, op));
  }

  WorkOr AllReduce(const void* send, void* recv, int64_t count, DataType t, ReduceOp op) override {
    TANDEM_RETURN_IF_ERROR(CheckReducible("all_reduce", t));
    TANDEM_RETURN_IF_ERROR(CheckCount("all_reduce", count, send));
    TANDEM_RETURN_IF_ERROR(CheckCount("all_reduce", count, recv));
    return Collect({OpType::kAllReduce, t, count, op}, send, recv);
  }
  WorkOr AllGather(const void* send, void* recv, int64_t count, DataType t) override {
    TANDEM_RETURN_IF_ERROR(CheckCount("all_gather", count, send));
    TANDEM_RETURN_IF_ERROR(CheckCount("all_gather", count, recv));
    return Collect({OpType::kAllGather, t, count}, send, recv);
  }
  WorkOr ReduceScatter(const void* send, void* recv, int64_t count, DataType t, ReduceOp op) override {
    TANDEM_RETURN_IF_ERROR(CheckReducible("reduce_scatter", t));
    TANDEM_RETURN_IF_ERROR(CheckCount("reduce_scatter", count, send));
    TANDEM_RETURN_IF_ERROR(CheckCount("reduce_scatter", count, recv));
    return Collect({OpType::kReduceScatter, t, count, op}, send, recv);
  }
  WorkOr Broadcast(void* buffer, int64_t count, DataType t, int root) override {
    TANDEM_RETURN_IF_ERROR(CheckPeer("broadcast root", root, size()));
    TANDEM_RETURN_IF_ERROR(CheckCount("broadcast", count, buffer));
    return Collect({OpType::kBroadcast, t, count, ReduceOp::kSum, root}, buffer, buffer);
  }
  WorkOr AllToAll(const void* send, void* recv, int64_t count, DataType t) override {
    TANDEM_RETURN_IF_ERROR(CheckCount("all_to_all", count, send));
    TANDEM_RETURN_IF_ERROR(CheckCount("all_to_all", count, recv));
    if (count > 0 && send == recv && size() > 1) {
      return absl::InvalidArgumentError("all_to_all: in-place (send == recv) is not supported");
    }
    return Collect({OpType::kAllToAll, t, count}, send, recv);
  }
  WorkOr AllToAllV(const void* send, absl::Span<const int64_t> send_counts, void* recv,
                   absl::Span<const int64_t> recv_counts, DataType t) override {
    TANDEM_RETURN_IF_ERROR(CheckAllToAllV(send, send_counts, recv, recv_counts, size()));
    int64_t sends = 0, recvs = 0;
    for (int p = 0; p < size(); ++p) sends += send_counts[p], recvs += recv_counts[p];
    Collective::Slot slot;
    slot.fp = {OpType::kAllToAllV, t, 0};
    slot.send = send;
    slot.recv = recv;
    slot.send_counts.assign(send_counts.begin(), send_counts.end());
    slot.recv_counts.assign(recv_counts.begin(), recv_counts.end());
    return Wrap(PostCollective(std::move(slot),
                               absl::StrFormat("all_to_all_v %s send %d recv %d", DataTypeName(t), sends, recvs)));
  }
  WorkOr Barrier() override { return Collect({OpType::kBarrier}, nullptr, nullptr); }

  // Completes pending operations in posting order up to and including `target`.
  absl::Status Progress(Op* target, Deadline deadline) {
    return CompleteInOrder(&pending_, target, deadline, &recorder_, rank_, [this](Op* op, Deadline d) {
      return op->coll != nullptr ? CompleteCollective(op, d) : CompleteP2P(op, d);
    });
  }

 private:
  WorkOr Wrap(absl::StatusOr<std::shared_ptr<Op>> op) {
    if (!op.ok()) return op.status();
    return std::unique_ptr<Work>(new LocalWork(this, *std::move(op)));
  }

  WorkOr Collect(Fingerprint fp, const void* send, void* recv) {
    Collective::Slot slot;
    slot.fp = fp;
    slot.send = send;
    slot.recv = recv;
    const std::string name = fp.ToString();
    return Wrap(PostCollective(std::move(slot), name));
  }

  absl::StatusOr<std::shared_ptr<Op>> PostCollective(Collective::Slot slot, const std::string& name) {
    auto op = std::make_shared<Op>();
    op->seq = next_seq_++;
    op->coll_seq = next_coll_++;
    op->name = absl::StrFormat("%s (collective #%d)", name, op->coll_seq);
    std::vector<int> parts;
    {
      absl::MutexLock lock(&world_->mu);
      std::shared_ptr<Collective>& c = world_->collectives[op->coll_seq];
      if (c == nullptr) c = std::make_shared<Collective>(size());
      op->coll = c;
      slot.present = true;
      c->slots[rank_] = std::move(slot);
      if (++c->arrived == size()) {
        c->mismatch = CheckAgreement(*c);
        // The last to post runs the parts of the ranks that are not waiting
        // for it (they compute meanwhile); waiting ranks run their own.
        for (int r = 0; r < size(); ++r) {
          if (!c->slots[r].waiting && !c->slots[r].claimed) {
            c->slots[r].claimed = true;
            parts.push_back(r);
          }
        }
      }
    }
    RunParts(*op->coll, parts);
    recorder_.Posted(op->seq, op->name);
    pending_.push_back(op);
    return op;
  }

  // Runs once all ranks arrived: every rank must call the same operation.
  absl::Status CheckAgreement(const Collective& c) const {
    const Collective::Slot& first = c.slots[0];
    for (int r = 1; r < size(); ++r) {
      if (!(c.slots[r].fp == first.fp)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("collective #%d: ranks disagree: rank 0 called %s, rank %d called %s", 0,
                            first.fp.ToString(), r, c.slots[r].fp.ToString()));
      }
    }
    if (first.fp.op == OpType::kAllToAllV) {
      for (int p = 0; p < size(); ++p) {
        for (int q = 0; q < size(); ++q) {
          if (c.slots[p].send_counts[q] != c.slots[q].recv_counts[p]) {
            return absl::InvalidArgumentError(
                absl::StrFormat("all_to_all_v: ranks disagree: rank %d sends %d elements to rank %d, which expects %d",
                                p, c.slots[p].send_counts[q], q, c.slots[q].recv_counts[p]));
          }
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status Timeout(const Op& op, Deadline deadline, absl::string_view waiting) const {
    return absl::DeadlineExceededError(absl::StrFormat("%s seq %d on rank %d: deadline %s exceeded; %s", op.name,
                                                       op.seq, rank_, absl::FormatDuration(deadline.timeout()),
                                                       waiting));
  }

  absl::Status CompleteCollective(Op* op, Deadline deadline) {
    Collective& c = *op->coll;
    const int n = size();
    World& w = *world_;
    absl::MutexLock lock(&w.mu);
    Collective::Slot& me = c.slots[rank_];
    me.waiting = true;
    auto all_arrived = [&c, n]() { return c.arrived == n; };
    if (!w.mu.AwaitWithDeadline(absl::Condition(&all_arrived), deadline.time())) {
      me.waiting = false;
      std::vector<int> missing;
      for (int r = 0; r < n; ++r) {
        if (!c.slots[r].present) missing.push_back(r);
      }
      return Timeout(*op, deadline, absl::StrCat("waiting for ranks ", RankList(missing), " to post it"));
    }
    if (!me.claimed) {
      me.claimed = true;
      w.mu.Unlock();
      RunParts(c, {rank_});
      w.mu.Lock();
    }
    auto all_done = [&c, n]() { return c.done == n; };
    if (!w.mu.AwaitWithDeadline(absl::Condition(&all_done), deadline.time())) {
      return Timeout(*op, deadline, "waiting for the other ranks to finish with its buffers");
    }
    const absl::Status status = c.mismatch;
    if (++c.left == n) w.collectives.erase(op->coll_seq);
    return status;
  }

  // Runs the parts of `ranks` (all ranks have arrived, so every buffer is
  // registered and stays valid until all parts are done) and counts them.
  void RunParts(const Collective& c, const std::vector<int>& ranks) ABSL_LOCKS_EXCLUDED(world_->mu) {
    if (ranks.empty()) return;
    if (c.mismatch.ok()) {
      for (int r : ranks) RunPart(c, r);
    }
    absl::MutexLock lock(&world_->mu);
    const_cast<Collective&>(c).done += static_cast<int>(ranks.size());
  }

  // Rank `me_rank`'s share of the data movement: what it receives.
  void RunPart(const Collective& c, int me_rank) const {
    const Collective::Slot& me = c.slots[me_rank];
    const Fingerprint& fp = me.fp;
    const int n = size();
    const int64_t es = SizeOf(fp.dtype);
    auto src = [&](int r, int64_t elem) { return static_cast<const char*>(c.slots[r].send) + elem * es; };
    auto dst = [&](int r, int64_t elem) { return static_cast<char*>(c.slots[r].recv) + elem * es; };
    switch (fp.op) {
      case OpType::kAllReduce: {
        // My slice of the elements, reduced in rank order, written to all.
        const int64_t lo = fp.count * me_rank / n, hi = fp.count * (me_rank + 1) / n;
        constexpr int64_t kBlock = 1 << 14;
        std::vector<char> acc(std::min(kBlock, std::max<int64_t>(hi - lo, 1)) * es);
        for (int64_t b = lo; b < hi; b += kBlock) {
          const int64_t len = std::min(kBlock, hi - b);
          std::memcpy(acc.data(), src(0, b), len * es);
          for (int r = 1; r < n; ++r) ReduceInto(fp.dtype, fp.reduce, acc.data(), src(r, b), len);
          if (fp.reduce == ReduceOp::kAvg) FinishAverage(fp.dtype, acc.data(), len, n);
          for (int r = 0; r < n; ++r) std::memcpy(dst(r, b), acc.data(), len * es);
        }
        return;
      }
      case OpType::kReduceScatter: {
        const int64_t base = fp.count * me_rank;
        std::vector<char> acc(std::max<int64_t>(fp.count, 1) * es);
        if (fp.count > 0) std::memcpy(acc.data(), src(0, base), fp.count * es);
        for (int r = 1; r < n; ++r) ReduceInto(fp.dtype, fp.reduce, acc.data(), src(r, base), fp.count);
        if (fp.reduce == ReduceOp::kAvg) FinishAverage(fp.dtype, acc.data(), fp.count, n);
        if (fp.count > 0) std::memcpy(me.recv, acc.data(), fp.count * es);
        return;
      }
      case OpType::kAllGather:
        for (int r = 0; r < n; ++r) {
          char* to = dst(me_rank, fp.count * r);
          if (to != src(r, 0) && fp.count > 0) std::memmove(to, src(r, 0), fp.count * es);
        }
        return;
      case OpType::kBroadcast:
        if (me_rank != fp.root && fp.count > 0) std::memcpy(me.recv, c.slots[fp.root].send, fp.count * es);
        return;
      case OpType::kAllToAll:
        for (int r = 0; r < n; ++r) {
          if (fp.count > 0) std::memcpy(dst(me_rank, fp.count * r), src(r, fp.count * me_rank), fp.count * es);
        }
        return;
      case OpType::kAllToAllV: {
        int64_t at = 0;
        for (int r = 0; r < n; ++r) {
          const Collective::Slot& peer = c.slots[r];
          int64_t offset = 0;
          for (int q = 0; q < me_rank; ++q) offset += peer.send_counts[q];
          const int64_t len = me.recv_counts[r];
          if (len > 0) std::memcpy(dst(me_rank, at), src(r, offset), len * es);
          at += len;
        }
        return;
      }
      case OpType::kBarrier:
      case OpType::kSplit:
      case OpType::kSendRecv:
        return;
    }
  }

  // Moves a message whose both sides are posted, or refuses a mismatch.
  void Move(Message& m) ABSL_LOCKS_EXCLUDED(world_->mu) {
    absl::Status s;
    if (m.send_count != m.recv_count || m.send_dtype != m.recv_dtype) {
      s = absl::InvalidArgumentError(absl::StrFormat(
          "message #%d from rank %d to rank %d: ranks disagree: sent %d %s, receive expects %d %s", m.index, m.src,
          m.dst, m.send_count, DataTypeName(m.send_dtype), m.recv_count, DataTypeName(m.recv_dtype)));
    } else if (m.recv_count > 0) {
      std::memcpy(m.recv, m.send, m.recv_count * SizeOf(m.recv_dtype));
    }
    absl::MutexLock lock(&world_->mu);
    m.status = std::move(s);
    m.done = true;
  }

  absl::Status CompleteP2P(Op* op, Deadline deadline) {
    World& w = *world_;
    for (; op->messages_done < op->messages.size(); ++op->messages_done) {
      Message* m = op->messages[op->messages_done].get();
      absl::MutexLock lock(&w.mu);
      auto done = [m]() { return m->done; };
      if (!w.mu.AwaitWithDeadline(absl::Condition(&done), deadline.time())) {
        if (m->dst == rank_) {
          return Timeout(
              *op, deadline,
              absl::StrFormat("waiting for rank %d to post its send #%d to rank %d", m->src, m->index, rank_));
        }
        return Timeout(*op, deadline, absl::StrFormat("waiting for rank %d to receive its message", m->dst));
      }
      if (op->status.ok()) op->status = m->status;
    }
    return op->status;
  }

  std::shared_ptr<World> world_;
  const int rank_;
  int64_t next_seq_ = 0;
  int64_t next_coll_ = 0;
  std::deque<std::shared_ptr<Op>> pending_;
  FlightRecorder recorder_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> CreateLocalGroup(int size) {
  auto world = std::make_shared<World>(std::max(size, 1));
  std::vector<std::unique_ptr<Communicator>> out;
  for (int r = 0; r < std::max(size, 1); ++r) out.push_back(std::make_unique<LocalCommunicator>(world, r));
  return out;
}

}  // namespace tandem::comm
