#include "comm/moe/dispatch.h"

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "base/testing/status_matchers.h"
#include "comm/local/local_communicator.h"
#include "comm/store_backend/store_communicator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::comm::moe {
namespace {

using ::tandem::testing::StatusIs;
using ::testing::HasSubstr;

constexpr absl::Duration kTimeout = absl::Seconds(30);

// One rank's batch: routing and tagged f32 input.
struct Batch {
  int tokens = 0;
  std::vector<int64_t> idx;
  std::vector<float> w;
  std::vector<float> x;
};

enum class Gen { kUniform, kGroupLimited, kSkewed, kMasked, kAllToOneRank, kEmptyRank, kDuplicates };
const Gen kGens[] = {Gen::kUniform,      Gen::kGroupLimited, Gen::kSkewed,    Gen::kMasked,
                     Gen::kAllToOneRank, Gen::kEmptyRank,    Gen::kDuplicates};

constexpr int kHidden = 20, kTopK = 4;

// Routing generators of the comm anchors (section 6): distinct experts per
// token unless masked.
std::vector<Batch> MakeBatches(Gen gen, int ranks, int experts, uint32_t seed) {
  std::vector<Batch> out(ranks);
  std::mt19937 rng(seed);
  const int per_rank = experts / ranks;
  for (int r = 0; r < ranks; ++r) {
    Batch& b = out[r];
    b.tokens = gen == Gen::kEmptyRank && r == ranks - 1 ? 0 : 5 + (r * 7 + static_cast<int>(seed)) % 9;
    for (int t = 0; t < b.tokens; ++t) {
      // Candidate experts [lo, lo + span) for this token; distinct picks,
      // padded with -1 when the span is smaller than top_k.
      int64_t lo = 0, span = experts;
      if (gen == Gen::kGroupLimited) lo = (t % 2) * (experts / 2), span = experts / 2;  // 2 groups, 1 chosen
      if (gen == Gen::kAllToOneRank) lo = int64_t{ranks - 1} * per_rank, span = per_rank;
      if (gen == Gen::kDuplicates) lo = int64_t{t % ranks} * per_rank, span = per_rank;  // one rank per token
      std::vector<int64_t> chosen;
      while (static_cast<int64_t>(chosen.size()) < std::min<int64_t>(kTopK, span)) {
        int64_t e = lo + rng() % span;
        if (gen == Gen::kSkewed && rng() % 10 < 7) e = rng() % per_rank;  // rank 0 hot
        if (std::find(chosen.begin(), chosen.end(), e) == chosen.end()) chosen.push_back(e);
      }
      chosen.resize(kTopK, -1);
      for (int k = 0; k < kTopK; ++k) {
        int64_t e = chosen[k];
        if (gen == Gen::kMasked && rng() % 10 < 3) e = -1;
        b.idx.push_back(e);
        b.w.push_back(e < 0 ? 0.0f : 0.125f * (1 + rng() % 7));
      }
      for (int c = 0; c < kHidden; ++c) b.x.push_back(r * 1000.0f + t + c * 0.25f);
    }
  }
  return out;
}

Routing RoutingOf(const Batch& b, int experts) { return Routing{b.tokens, kTopK, experts, b.idx, b.w}; }

// Runs fn on one thread per rank.
template <typename Fn>
void OnRanks(std::vector<std::unique_ptr<Communicator>>& comms, Fn fn) {
  std::vector<std::thread> threads;
  for (size_t r = 0; r < comms.size(); ++r) threads.emplace_back([&, r] { fn(static_cast<int>(r), *comms[r]); });
  for (std::thread& t : threads) t.join();
}

// Host reference for rank `me`: rows from each source in token order.
struct Expected {
  std::vector<float> x;
  std::vector<int32_t> local;
  std::vector<float> w;
  std::vector<int64_t> source;
  std::vector<int32_t> per_expert;
};

Expected Reference(const std::vector<Batch>& batches, int me, int experts, int alignment) {
  const int ranks = static_cast<int>(batches.size()), per_rank = experts / ranks;
  Expected e;
  e.per_expert.assign(per_rank, 0);
  for (int src = 0; src < ranks; ++src) {
    const Batch& b = batches[src];
    for (int t = 0; t < b.tokens; ++t) {
      bool here = false;
      for (int k = 0; k < kTopK; ++k) here |= b.idx[t * kTopK + k] >= 0 && b.idx[t * kTopK + k] / per_rank == me;
      if (!here) continue;
      e.x.insert(e.x.end(), b.x.begin() + t * kHidden, b.x.begin() + (t + 1) * kHidden);
      for (int k = 0; k < kTopK; ++k) {
        const int64_t id = b.idx[t * kTopK + k];
        const bool local = id >= 0 && id / per_rank == me;
        e.local.push_back(local ? static_cast<int32_t>(id - me * per_rank) : -1);
        e.w.push_back(local ? b.w[t * kTopK + k] : 0.0f);
        if (local) ++e.per_expert[id - me * per_rank];
      }
      e.source.push_back((int64_t{src} << 32) | t);
    }
  }
  for (int32_t& c : e.per_expert) c = (c + alignment - 1) / alignment * alignment;
  return e;
}

std::vector<float> AsFloats(const std::vector<char>& bytes) {
  std::vector<float> f(bytes.size() / 4);
  std::memcpy(f.data(), bytes.data(), bytes.size());
  return f;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), 4 * a.size()) == 0;
}

TEST(DispatchTest, LayoutMatchesHostCounts) {
  for (Gen gen : kGens) {
    const std::vector<Batch> batches = MakeBatches(gen, 4, 16, 3);
    ASSERT_OK_AND_ASSIGN(Layout l, GetDispatchLayout(RoutingOf(batches[0], 16), 4));
    std::vector<int32_t> per_rank(4, 0), per_expert(16, 0);
    for (int t = 0; t < batches[0].tokens; ++t) {
      std::vector<bool> seen(4, false);
      for (int k = 0; k < kTopK; ++k) {
        const int64_t e = batches[0].idx[t * kTopK + k];
        if (e < 0) continue;
        ++per_expert[e];
        seen[e / 4] = true;
      }
      for (int r = 0; r < 4; ++r) {
        per_rank[r] += seen[r];
        EXPECT_EQ(l.is_token_in_rank[t * 4 + r], seen[r] ? 1 : 0);
      }
    }
    EXPECT_EQ(l.tokens_per_rank, per_rank);
    EXPECT_EQ(l.tokens_per_expert, per_expert);
  }
}

// Every generator, world sizes 1..8, f32: received rows, ids, weights,
// sources and aligned counts equal the host reference bit for bit; combine
// equals a host sum in rank order, bit for bit.
TEST(DispatchTest, DispatchAndCombineMatchHostReferenceBitForBit) {
  for (int ranks : {1, 2, 3, 4, 8}) {
    const int experts = 2 * ranks * 2;
    for (Gen gen : kGens) {
      for (int alignment : {1, 4}) {
        SCOPED_TRACE(absl::StrFormat("ranks=%d gen=%d alignment=%d", ranks, static_cast<int>(gen), alignment));
        const std::vector<Batch> batches = MakeBatches(gen, ranks, experts, 17 + ranks);
        auto comms = CreateLocalGroup(ranks);
        std::vector<absl::StatusOr<Dispatched>> got(ranks);
        std::vector<absl::StatusOr<std::vector<char>>> combined(ranks);
        // Synthetic expert output of a received row: depends on the source
        // token, the receiving rank and the channel.
        auto y = [](int64_t source, int rank, int c) {
          return std::sin(static_cast<float>(source % 997) * 0.01f + rank * 0.37f + c * 0.1f);
        };
        OnRanks(comms, [&](int r, Communicator& c) {
          got[r] = Dispatch(c, batches[r].x.data(), DataType::kF32, kHidden, RoutingOf(batches[r], experts),
                            {alignment}, Deadline::In(kTimeout));
          if (!got[r].ok()) return;
          std::vector<float> rows(got[r]->num_rows * kHidden);
          for (int64_t i = 0; i < got[r]->num_rows; ++i) {
            for (int ch = 0; ch < kHidden; ++ch) rows[i * kHidden + ch] = y(got[r]->source[i], r, ch);
          }
          combined[r] = Combine(c, got[r]->handle, rows.data(), DataType::kF32, Deadline::In(kTimeout));
        });
        for (int r = 0; r < ranks; ++r) {
          ASSERT_OK(got[r]);
          const Expected e = Reference(batches, r, experts, alignment);
          EXPECT_TRUE(SameBits(AsFloats(got[r]->x), e.x)) << "x on rank " << r;
          EXPECT_EQ(got[r]->local_expert, e.local);
          EXPECT_TRUE(SameBits(got[r]->weights, e.w));
          EXPECT_EQ(got[r]->source, e.source);
          EXPECT_EQ(got[r]->tokens_per_expert, e.per_expert);
          // Combine: per token, rows of the ranks it went to, in rank order.
          ASSERT_OK(combined[r]);
          const int per_rank = experts / ranks;
          std::vector<float> want(batches[r].tokens * kHidden, 0.0f);
          for (int t = 0; t < batches[r].tokens; ++t) {
            for (int dst = 0; dst < ranks; ++dst) {
              bool there = false;
              for (int k = 0; k < kTopK; ++k) {
                const int64_t id = batches[r].idx[t * kTopK + k];
                there |= id >= 0 && id / per_rank == dst;
              }
              if (!there) continue;
              for (int ch = 0; ch < kHidden; ++ch) want[t * kHidden + ch] += y((int64_t{r} << 32) | t, dst, ch);
            }
          }
          EXPECT_TRUE(SameBits(AsFloats(*combined[r]), want)) << "combine on rank " << r;
        }
      }
    }
  }
}

// Must-fail twin of the bitwise checks: one changed weight or value is seen.
TEST(DispatchTest, CorruptedExpectationIsDetected) {
  std::vector<float> a = {1, 2, 3};
  std::vector<float> b = a;
  b[1] = std::nextafter(b[1], 3.0f);
  EXPECT_FALSE(SameBits(a, b));
  const std::vector<Batch> batches = MakeBatches(Gen::kUniform, 1, 8, 1);
  Expected e = Reference(batches, 0, 8, 1);
  ASSERT_FALSE(e.local.empty());
  auto comms = CreateLocalGroup(1);
  ASSERT_OK_AND_ASSIGN(Dispatched d, Dispatch(*comms[0], batches[0].x.data(), DataType::kF32, kHidden,
                                              RoutingOf(batches[0], 8), {}, Deadline::In(kTimeout)));
  EXPECT_EQ(d.local_expert, e.local);
  e.local[0] = (e.local[0] + 1) % 8;
  EXPECT_NE(d.local_expert, e.local);
}

// combine(dispatch(x)) with identity experts is x times the token's fan-out
// (exact for these values); cached dispatch reproduces the row order; the
// store backend gives the same bits as the local one.
TEST(DispatchTest, RoundTripCachedAndCrossBackend) {
  const int ranks = 3, experts = 12;
  const std::vector<Batch> batches = MakeBatches(Gen::kMasked, ranks, experts, 5);
  auto local = CreateLocalGroup(ranks);
  MemoryStore store;
  std::vector<std::unique_ptr<Communicator>> stored;
  for (int r = 0; r < ranks; ++r) stored.push_back(MakeStoreCommunicator(&store, r, ranks, "moe/"));
  for (auto* comms : {&local, &stored}) {
    std::vector<absl::Status> status(ranks);
    std::vector<std::vector<float>> back(ranks), cached(ranks), direct(ranks);
    OnRanks(*comms, [&](int r, Communicator& c) {
      absl::StatusOr<Dispatched> d = Dispatch(c, batches[r].x.data(), DataType::kF32, kHidden,
                                              RoutingOf(batches[r], experts), {}, Deadline::In(kTimeout));
      if (!d.ok()) {
        status[r] = d.status();
        return;
      }
      direct[r] = AsFloats(d->x);
      absl::StatusOr<std::vector<char>> out =
          Combine(c, d->handle, d->x.data(), DataType::kF32, Deadline::In(kTimeout));
      if (!out.ok()) {
        status[r] = out.status();
        return;
      }
      back[r] = AsFloats(*out);
      absl::StatusOr<std::vector<char>> again =
          DispatchCached(c, d->handle, batches[r].x.data(), DataType::kF32, Deadline::In(kTimeout));
      if (!again.ok()) {
        status[r] = again.status();
        return;
      }
      cached[r] = AsFloats(*again);
    });
    for (int r = 0; r < ranks; ++r) {
      ASSERT_OK(status[r]);
      EXPECT_TRUE(SameBits(cached[r], direct[r]));
      const Expected e = Reference(batches, r, experts, 1);
      EXPECT_TRUE(SameBits(direct[r], e.x)) << (*comms)[0]->backend();
      for (int t = 0; t < batches[r].tokens; ++t) {
        std::vector<bool> seen(ranks, false);
        int fanout = 0;
        for (int k = 0; k < kTopK; ++k) {
          const int64_t id = batches[r].idx[t * kTopK + k];
          if (id >= 0 && !seen[id / 4]) seen[id / 4] = true, ++fanout;
        }
        for (int c = 0; c < kHidden; ++c) {
          EXPECT_EQ(back[r][t * kHidden + c], fanout * batches[r].x[t * kHidden + c]);
        }
      }
    }
  }
}

TEST(DispatchTest, Bf16AndFp8Payloads) {
  const int ranks = 2, experts = 8;
  const std::vector<Batch> batches = MakeBatches(Gen::kUniform, ranks, experts, 9);
  auto comms = CreateLocalGroup(ranks);
  std::vector<std::vector<uint16_t>> bf16(ranks);
  for (int r = 0; r < ranks; ++r) {
    for (float v : batches[r].x) bf16[r].push_back(FloatToBf16(std::fmod(v, 200.0f)));
  }
  std::vector<absl::StatusOr<Dispatched>> got(ranks), fp8(ranks);
  OnRanks(comms, [&](int r, Communicator& c) {
    got[r] = Dispatch(c, bf16[r].data(), DataType::kBF16, kHidden, RoutingOf(batches[r], experts), {},
                      Deadline::In(kTimeout));
    DispatchOptions o;
    o.fp8 = true;
    fp8[r] = Dispatch(c, batches[r].x.data(), DataType::kF32, kHidden, RoutingOf(batches[r], experts), o,
                      Deadline::In(kTimeout));
  });
  for (int r = 0; r < ranks; ++r) {
    ASSERT_OK(got[r]);
    ASSERT_OK(fp8[r]);
    // bf16 rows arrive unchanged: compare with the sources' bf16 rows.
    for (int64_t i = 0; i < got[r]->num_rows; ++i) {
      const int src = static_cast<int>(got[r]->source[i] >> 32), t = static_cast<int>(got[r]->source[i] & 0xffffffff);
      EXPECT_EQ(std::memcmp(got[r]->x.data() + i * kHidden * 2, bf16[src].data() + t * kHidden, kHidden * 2), 0);
      // FP8: each value is e4m3(x / s) * s with s = max|x| / 448 over the row's 128-channel group.
      float amax = 0;
      for (int c = 0; c < kHidden; ++c) amax = std::max(amax, std::fabs(batches[src].x[t * kHidden + c]));
      const float s = std::max(amax, 1e-4f) / 448.0f;
      for (int c = 0; c < kHidden; ++c) {
        float v;
        std::memcpy(&v, fp8[r]->x.data() + (i * kHidden + c) * 4, 4);
        EXPECT_EQ(v, E4M3ToFloat(FloatToE4M3(batches[src].x[t * kHidden + c] / s)) * s);
        EXPECT_NEAR(v, batches[src].x[t * kHidden + c], std::fabs(batches[src].x[t * kHidden + c]) / 16 + s);
      }
    }
  }
}

TEST(DispatchTest, E4M3Codes) {
  EXPECT_EQ(E4M3ToFloat(0x38), 1.0f);
  EXPECT_EQ(E4M3ToFloat(0x7e), 448.0f);
  EXPECT_EQ(E4M3ToFloat(0x08), std::ldexp(1.0f, -6));
  EXPECT_EQ(E4M3ToFloat(0x01), std::ldexp(1.0f, -9));
  EXPECT_TRUE(std::isnan(E4M3ToFloat(0x7f)));
  // Every finite code decodes and encodes back to itself.
  for (int v = 0; v < 256; ++v) {
    if ((v & 0x7f) == 0x7f || v == 0x80) continue;
    EXPECT_EQ(FloatToE4M3(E4M3ToFloat(v)), v) << v;
  }
  EXPECT_EQ(FloatToE4M3(1000.0f), 0x7e);  // saturates
  EXPECT_EQ(FloatToE4M3(1.0625f), 0x38);  // halfway 1 and 1.125: to even
  EXPECT_EQ(FloatToE4M3(1.1875f), 0x3a);  // halfway 1.125 and 1.25: to even
}

TEST(DispatchTest, BadInputIsNamed) {
  auto comms = CreateLocalGroup(2);
  std::vector<int64_t> idx = {0, 9};
  std::vector<float> w = {1, 1};
  std::vector<float> x(8, 0);
  EXPECT_THAT(GetDispatchLayout({1, 2, 8, idx, w}, 2),
              StatusIs(absl::StatusCode::kInvalidArgument, "topk_idx[0][1]: expected -1 or an expert in 0..7, got 9"));
  EXPECT_THAT(GetDispatchLayout({1, 2, 7, idx, w}, 2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_experts: expected a positive multiple")));
  EXPECT_THAT(GetDispatchLayout({2, 2, 8, idx, w}, 2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 2 x 2 top-k ids")));
  EXPECT_THAT(Dispatch(*comms[0], x.data(), DataType::kI32, 4, {1, 2, 8, idx, w}, {}, Deadline::In(kTimeout)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dtype: expected f32 or bf16")));
  // Ranks that disagree on top_k (record sizes) get an error, not garbage.
  std::vector<absl::Status> st(2);
  OnRanks(comms, [&](int r, Communicator& c) {
    std::vector<int64_t> ids = r == 0 ? std::vector<int64_t>{0, 5} : std::vector<int64_t>{0, 5, 6};
    std::vector<float> ws(ids.size(), 1.0f);
    st[r] = Dispatch(c, x.data(), DataType::kF32, 4, {1, static_cast<int>(ids.size()), 8, ids, ws}, {},
                     Deadline::In(kTimeout))
                .status();
  });
  for (const absl::Status& s : st) EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("disagree")));
}

}  // namespace
}  // namespace tandem::comm::moe
