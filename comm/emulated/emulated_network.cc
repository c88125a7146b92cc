#include "comm/emulated/emulated_network.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "base/sleep.h"
#include "base/status_macros.h"

namespace tandem::comm {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

namespace {

Clock::duration Us(double us) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::micro>(us));
}

// One collective call, shared by its participants (keyed by group and
// collective sequence).
struct Collective {
  explicit Collective(std::vector<int> w)
      : world(std::move(w)), sends(world.size()), end(world.size()), alone_us(world.size()) {}
  std::vector<int> world;                                   // local rank -> world rank
  std::vector<std::vector<std::pair<int, int64_t>>> sends;  // per local rank: (local dst, bytes)
  int posted = 0;
  TimePoint last_post;
  bool scheduled = false;
  TimePoint ready;
  std::vector<TimePoint> end;    // per local rank
  std::vector<double> alone_us;  // per local rank: end - ready had every egress been free
};

// One point-to-point message (keyed by group, sender, receiver and number).
struct Message {
  int src = 0, dst = 0;  // world ranks
  int64_t bytes = 0;
  bool send_posted = false, recv_posted = false;
  TimePoint last_post;
  bool scheduled = false;
  TimePoint ready, end;
  double alone_us = 0;
};

}  // namespace

struct EmulatedNetwork::Fabric {
  explicit Fabric(NetworkModel m) : model(std::move(m)) {}

  Link LinkBetween(int src, int dst) const {
    const int per_node = std::max(1, model.ranks_per_node);
    if (src / per_node == dst / per_node) return model.same_node;
    return model.between_nodes ? model.between_nodes(src, dst) : model.other_node;
  }

  // Reserves src's egress for a transfer that may start at `ready`; returns
  // its arrival.
  TimePoint Transfer(int src, int dst, int64_t bytes, TimePoint ready) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (src == dst) return ready;
    const Link link = LinkBetween(src, dst);
    if (static_cast<int>(egress.size()) <= src) egress.resize(src + 1);
    const TimePoint start = std::max(ready, egress[src]);
    egress[src] = start + Us(link.SerializationUs(bytes));
    return egress[src] + Us(link.latency_us);
  }

  // Called by the last poster of `c`: the transfers, in (sender, receiver)
  // order, and each rank's end.
  void Schedule(Collective& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    c.ready = c.last_post;
    std::fill(c.end.begin(), c.end.end(), c.ready);
    for (size_t src = 0; src < c.sends.size(); ++src) {
      double busy_us = 0;  // src's egress, had it been free at ready
      for (const auto& [dst, bytes] : c.sends[src]) {
        const TimePoint arrival = Transfer(c.world[src], c.world[dst], bytes, c.ready);
        c.end[src] = std::max(c.end[src], arrival);
        c.end[dst] = std::max(c.end[dst], arrival);
        if (c.world[src] == c.world[dst]) continue;
        const Link link = LinkBetween(c.world[src], c.world[dst]);
        busy_us += link.SerializationUs(bytes);
        c.alone_us[src] = std::max(c.alone_us[src], busy_us + link.latency_us);
        c.alone_us[dst] = std::max(c.alone_us[dst], busy_us + link.latency_us);
      }
    }
    c.scheduled = true;
  }

  void Schedule(Message& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    m.ready = m.last_post;
    m.end = Transfer(m.src, m.dst, m.bytes, m.ready);
    if (m.src != m.dst) {
      const Link link = LinkBetween(m.src, m.dst);
      m.alone_us = link.SerializationUs(m.bytes) + link.latency_us;
    }
    m.scheduled = true;
  }

  const NetworkModel model;
  absl::Mutex mu;
  std::vector<TimePoint> egress ABSL_GUARDED_BY(mu);  // per world rank: free from
  absl::flat_hash_map<std::string, std::shared_ptr<Collective>> collectives ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, std::shared_ptr<Message>> messages ABSL_GUARDED_BY(mu);
  std::map<int, std::vector<ModeledOp>> logs ABSL_GUARDED_BY(mu);
};

namespace {

using Fabric = EmulatedNetwork::Fabric;

// The Work of an emulated operation: the backend's work, then the modeled
// completion.
class EmulatedWork : public Work {
 public:
  EmulatedWork(std::unique_ptr<Work> inner, std::shared_ptr<Fabric> fabric, int world_rank, ModeledOp op,
               std::shared_ptr<Collective> coll, int local, std::vector<std::shared_ptr<Message>> messages)
      : inner_(std::move(inner)),
        fabric_(std::move(fabric)),
        world_rank_(world_rank),
        op_(std::move(op)),
        coll_(std::move(coll)),
        local_(local),
        messages_(std::move(messages)) {}

  absl::Status Wait(Deadline deadline) override {
    if (done_) return status_;
    TANDEM_RETURN_IF_ERROR(inner_->Wait(deadline));
    // The backend completed, so every participant has posted; the last of
    // them schedules the transfers right after its post.
    if (!modeled_) {
      absl::MutexLock lock(&fabric_->mu);
      auto scheduled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(fabric_->mu) { return Scheduled(); };
      if (!fabric_->mu.AwaitWithDeadline(absl::Condition(&scheduled), deadline.time())) {
        return deadline.Exceeded(absl::StrCat(op_.name, ": waiting for the network model to schedule it"));
      }
      ReadModel();
    }
    const auto left = std::chrono::duration<double>(op_.end - Clock::now()).count();
    if (left > 0 && absl::Seconds(left) > deadline.Remaining()) {
      SleepUntil(Clock::now() + absl::ToChronoNanoseconds(deadline.Remaining()));
      return deadline.Exceeded(absl::StrFormat("%s: the modeled network completes it %.3f ms later", op_.name,
                                               1e3 * std::chrono::duration<double>(op_.end - Clock::now()).count()));
    }
    SleepUntil(op_.end);
    done_ = true;
    absl::MutexLock lock(&fabric_->mu);
    fabric_->logs[world_rank_].push_back(op_);
    return status_;
  }

  bool IsCompleted() override {
    if (done_) return true;
    if (!inner_->IsCompleted()) return false;
    {
      absl::MutexLock lock(&fabric_->mu);
      if (!modeled_ && !Scheduled()) return false;
    }
    return Wait(Deadline::In(absl::ZeroDuration())).ok();
  }

 private:
  bool Scheduled() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(fabric_->mu) {
    if (coll_ != nullptr) return coll_->scheduled;
    for (const auto& m : messages_) {
      if (!m->scheduled) return false;
    }
    return true;
  }

  // Fills op_.ready and op_.end from the scheduled transfers and lets go of
  // the shared records.
  void ReadModel() ABSL_EXCLUSIVE_LOCKS_REQUIRED(fabric_->mu) {
    if (coll_ != nullptr) {
      op_.ready = coll_->ready;
      op_.end = coll_->end[local_];
      op_.alone_us = coll_->alone_us[local_];
      coll_.reset();
    } else {
      op_.ready = op_.end = op_.posted;
      for (const auto& m : messages_) {
        op_.ready = std::max(op_.ready, m->ready);
        op_.end = std::max(op_.end, m->end);
        op_.alone_us = std::max(op_.alone_us, m->alone_us);
      }
      messages_.clear();
    }
    modeled_ = true;
  }

  std::unique_ptr<Work> inner_;
  std::shared_ptr<Fabric> fabric_;
  const int world_rank_;
  ModeledOp op_;
  std::shared_ptr<Collective> coll_;
  const int local_;
  std::vector<std::shared_ptr<Message>> messages_;
  bool modeled_ = false;
  bool done_ = false;
  absl::Status status_;
};

class EmulatedCommunicator : public Communicator {
 public:
  EmulatedCommunicator(std::unique_ptr<Communicator> inner, std::shared_ptr<Fabric> fabric, std::string group,
                       std::vector<int> world)
      : inner_(std::move(inner)), fabric_(std::move(fabric)), group_(std::move(group)), world_(std::move(world)) {}

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  absl::string_view backend() const override { return inner_->backend(); }

  absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key, Deadline deadline) override {
    const std::string group = absl::StrCat(group_, "/s", splits_++, "c", color);
    TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> inner, inner_->Split(color, key, deadline));
    if (inner == nullptr) return std::unique_ptr<Communicator>();
    // The new group's world ranks (one unmodeled all-gather on the backend).
    int32_t me = world_[rank()];
    std::vector<int32_t> members(inner->size());
    TANDEM_RETURN_IF_ERROR(PostAndWait(inner->AllGather(&me, members.data(), 1, DataType::kI32), deadline));
    return std::unique_ptr<Communicator>(
        new EmulatedCommunicator(std::move(inner), fabric_, group, std::vector<int>(members.begin(), members.end())));
  }

  WorkOr SendRecv(absl::Span<const P2POp> ops) override {
    // Posted on the backend first: invalid arguments leave nothing behind.
    const TimePoint posted = Clock::now();
    TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<Work> inner, inner_->SendRecv(ops));
    std::vector<std::shared_ptr<Message>> messages;
    int64_t bytes = 0;
    {
      absl::MutexLock lock(&fabric_->mu);
      for (const P2POp& p : ops) {
        const bool send = p.kind == P2POp::Kind::kSend;
        const int src = send ? rank() : p.peer, dst = send ? p.peer : rank();
        int64_t& number = send ? sent_[p.peer] : received_[p.peer];
        const std::string key = absl::StrCat(group_, "|", src, ">", dst, "#", number++);
        std::shared_ptr<Message>& m = fabric_->messages[key];
        if (m == nullptr) m = std::make_shared<Message>();
        m->src = world_[src];
        m->dst = world_[dst];
        m->last_post = std::max(m->last_post, posted);
        if (send) {
          m->send_posted = true;
          m->bytes = p.count * SizeOf(p.dtype);
          bytes += m->bytes;
        } else {
          m->recv_posted = true;
        }
        if (m->send_posted && m->recv_posted) {
          fabric_->Schedule(*m);
          fabric_->messages.erase(key);  // both sides hold it now
        }
        messages.push_back(m);
      }
    }
    return Wrap(std::move(inner), posted, absl::StrCat("send_recv ", ops.size(), " ops ", bytes, " B"), nullptr,
                std::move(messages));
  }

  WorkOr AllReduce(const void* send, void* recv, int64_t count, DataType t, ReduceOp op) override {
    const int64_t bytes = count * SizeOf(t), n = size();
    const TimePoint posted = Clock::now();
    return Collect(posted, inner_->AllReduce(send, recv, count, t, op), absl::StrCat("all_reduce ", bytes, " B"),
                   Ring(n > 1 ? 2 * (n - 1) * bytes / n : 0));
  }
  WorkOr AllGather(const void* send, void* recv, int64_t count, DataType t) override {
    const TimePoint posted = Clock::now();
    return Collect(posted, inner_->AllGather(send, recv, count, t),
                   absl::StrCat("all_gather ", count * SizeOf(t), " B"), Ring((size() - 1) * count * SizeOf(t)));
  }
  WorkOr ReduceScatter(const void* send, void* recv, int64_t count, DataType t, ReduceOp op) override {
    const TimePoint posted = Clock::now();
    return Collect(posted, inner_->ReduceScatter(send, recv, count, t, op),
                   absl::StrCat("reduce_scatter ", count * SizeOf(t), " B"), Ring((size() - 1) * count * SizeOf(t)));
  }
  WorkOr Broadcast(void* buffer, int64_t count, DataType t, int root) override {
    std::vector<std::pair<int, int64_t>> sends;
    if (rank() == root) {
      for (int q = 0; q < size(); ++q) {
        if (q != root) sends.emplace_back(q, count * SizeOf(t));
      }
    }
    const TimePoint posted = Clock::now();
    return Collect(posted, inner_->Broadcast(buffer, count, t, root),
                   absl::StrCat("broadcast ", count * SizeOf(t), " B"), std::move(sends));
  }
  WorkOr AllToAll(const void* send, void* recv, int64_t count, DataType t) override {
    std::vector<int64_t> counts(size(), count);
    const TimePoint posted = Clock::now();
    return Collect(posted, inner_->AllToAll(send, recv, count, t), absl::StrCat("all_to_all ", count * SizeOf(t), " B"),
                   ToEach(counts, t));
  }
  WorkOr AllToAllV(const void* send, absl::Span<const int64_t> send_counts, void* recv,
                   absl::Span<const int64_t> recv_counts, DataType t) override {
    int64_t total = 0;
    for (int64_t c : send_counts) total += c;
    const TimePoint posted = Clock::now();
    return Collect(posted, inner_->AllToAllV(send, send_counts, recv, recv_counts, t),
                   absl::StrCat("all_to_all_v ", total * SizeOf(t), " B"), ToEach(send_counts, t));
  }
  WorkOr Barrier() override {
    std::vector<int64_t> zeros(size(), 0);
    const TimePoint posted = Clock::now();
    return Collect(posted, inner_->Barrier(), "barrier", ToEach(zeros, DataType::kBytes));
  }

 private:
  std::vector<std::pair<int, int64_t>> Ring(int64_t bytes) const {
    if (size() == 1) return {};
    return {{(rank() + 1) % size(), bytes}};
  }
  std::vector<std::pair<int, int64_t>> ToEach(absl::Span<const int64_t> counts, DataType t) const {
    std::vector<std::pair<int, int64_t>> sends;
    for (int q = 0; q < size() && q < static_cast<int>(counts.size()); ++q) {
      if (q != rank()) sends.emplace_back(q, counts[q] * SizeOf(t));
    }
    return sends;
  }

  // Registers this rank's part of a collective it just posted (at `posted`).
  WorkOr Collect(TimePoint posted, WorkOr inner, std::string name, std::vector<std::pair<int, int64_t>> sends) {
    if (!inner.ok()) return inner.status();  // nothing was posted
    std::shared_ptr<Collective> c;
    {
      absl::MutexLock lock(&fabric_->mu);
      const std::string key = absl::StrCat(group_, "#", collectives_++);
      std::shared_ptr<Collective>& slot = fabric_->collectives[key];
      if (slot == nullptr) slot = std::make_shared<Collective>(world_);
      c = slot;
      c->sends[rank()] = std::move(sends);
      c->last_post = std::max(c->last_post, posted);
      if (++c->posted == size()) {
        fabric_->Schedule(*c);
        fabric_->collectives.erase(key);  // every participant holds it
      }
    }
    return Wrap(*std::move(inner), posted, std::move(name), std::move(c), {});
  }

  WorkOr Wrap(std::unique_ptr<Work> inner, TimePoint posted, std::string name, std::shared_ptr<Collective> c,
              std::vector<std::shared_ptr<Message>> messages) {
    ModeledOp op;
    op.group = group_;
    op.name = std::move(name);
    op.posted = posted;
    return std::unique_ptr<Work>(new EmulatedWork(std::move(inner), fabric_, world_[rank()], std::move(op),
                                                  std::move(c), rank(), std::move(messages)));
  }

  std::unique_ptr<Communicator> inner_;
  std::shared_ptr<Fabric> fabric_;
  const std::string group_;
  const std::vector<int> world_;  // local rank -> world rank
  int64_t collectives_ = 0;
  int splits_ = 0;
  std::map<int, int64_t> sent_, received_;  // per peer
};

}  // namespace

EmulatedNetwork::EmulatedNetwork(NetworkModel model) : fabric_(std::make_shared<Fabric>(std::move(model))) {}

EmulatedNetwork::~EmulatedNetwork() = default;

std::vector<std::unique_ptr<Communicator>> EmulatedNetwork::Wrap(std::vector<std::unique_ptr<Communicator>> world) {
  std::vector<int> ranks(world.size());
  for (size_t r = 0; r < world.size(); ++r) ranks[r] = static_cast<int>(r);
  std::vector<std::unique_ptr<Communicator>> out;
  for (auto& c : world) out.push_back(std::make_unique<EmulatedCommunicator>(std::move(c), fabric_, "world", ranks));
  return out;
}

Link EmulatedNetwork::LinkBetween(int src, int dst) const { return fabric_->LinkBetween(src, dst); }

std::vector<ModeledOp> EmulatedNetwork::Log(int rank) const {
  absl::MutexLock lock(&fabric_->mu);
  auto it = fabric_->logs.find(rank);
  return it == fabric_->logs.end() ? std::vector<ModeledOp>() : it->second;
}

}  // namespace tandem::comm
