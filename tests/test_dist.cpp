// Data-parallel training (docs/distributed.md): the rows of a split batch draw what the whole batch
// draws; torchrun's variables; the c10d communicator's collectives; and a trainer on two ranks (two
// threads of this process, over Gloo on loopback) equal to one process with the same global batch,
// with and without gradient accumulation.
#include <exception>
#include <functional>
#include <map>
#include <thread>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "helpers.h"
#include "ramflow/communicator.h"
#include "ramflow/errors.h"
#include "ramflow/jobs.h"
#include "ramflow/launch.h"
#include "ramflow/renoise.h"
#include "ramflow/rows.h"
#include "ramflow/task.h"
#include "ramflow/trainer.h"

namespace ramflow {
namespace {

using testing::pretrained;

// --- rows of a split batch ---------------------------------------------------------------------
TEST(Rows, ASplitBatchDrawsTheWholeBatchsRows) {
  // Rows() draws exactly what the plain draw gives.
  Rng a(7), b(7);
  EXPECT_TRUE(torch::equal(Rows().randn(a, {6, 3}), b.randn({6, 3})));
  // Rows {1, 4} of 6 are rows 1 and 4 of the whole batch's draw, and the stream ends where the
  // whole batch's draw leaves it.
  Rng c(7), d(7);
  const Rows rows(torch::tensor({1, 4}, torch::kLong), 6);
  const auto whole = d.randn({6, 3});
  EXPECT_TRUE(torch::equal(rows.randn(c, {2, 3}), whole.index_select(0, rows.index())));
  EXPECT_TRUE(torch::equal(c.randn({5}), d.randn({5})));
  // K-fold repetition (renoise's layout): endpoint b's draws are rows b K .. b K + K - 1.
  EXPECT_TRUE(torch::equal(rows.repeated(3).index(), torch::tensor({3, 4, 5, 12, 13, 14})));
  EXPECT_EQ(rows.repeated(3).total(), 18);
  // Slices and rebasing into a minibatch.
  const Rows r = Rows::range(4, 8, 16);
  EXPECT_TRUE(torch::equal(r.slice(1, 3).index(), torch::tensor({5, 6})));
  EXPECT_TRUE(torch::equal(r.within(4, 8).index(), torch::tensor({0, 1, 2, 3})));
  EXPECT_THROW(r.within(6, 8), c10::Error);  // row 4 is not in [6, 14)
  EXPECT_THROW(Rows(torch::tensor({0, 9}, torch::kLong), 8), c10::Error);
}

TEST(Rows, RenoisingASplitBatchEqualsTheWholeBatchsRows) {
  const auto x0 = torch::randn({8, 2});
  Rng a(3), b(3);
  const TimeDistribution time;
  const Renoised whole = renoise(x0, {}, 3, time, a);
  const Rows rows = Rows::range(2, 6, 8);
  const Renoised part = renoise(rows.take(x0), {}, 3, time, b, rows);
  const auto idx = rows.repeated(3).index();
  EXPECT_TRUE(torch::equal(part.t, whole.t.index_select(0, idx)));
  EXPECT_TRUE(torch::equal(part.eps, whole.eps.index_select(0, idx)));
  EXPECT_TRUE(torch::equal(part.x_t, whole.x_t.index_select(0, idx)));
}

// --- torchrun's variables -----------------------------------------------------------------------
std::function<const char*(const char*)> env(std::map<std::string, std::string> vars) {
  auto held = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [held](const char* name) -> const char* {
    auto it = held->find(name);
    return it == held->end() ? nullptr : it->second.c_str();
  };
}

TEST(Rendezvous, ReadsTorchrunsVariablesAndNamesABadOne) {
  EXPECT_FALSE(Rendezvous::from_env(env({})).has_value());
  const auto r = Rendezvous::from_env(env({{"RANK", "1"},
                                           {"WORLD_SIZE", "4"},
                                           {"LOCAL_RANK", "0"},
                                           {"MASTER_ADDR", "10.0.0.1"},
                                           {"MASTER_PORT", "29400"},
                                           {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                                           {"TORCHELASTIC_RESTART_COUNT", "2"}}));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->rank, 1);
  EXPECT_EQ(r->world_size, 4);
  EXPECT_EQ(r->local_rank, 0);
  EXPECT_EQ(r->master_addr, "10.0.0.1");
  EXPECT_EQ(r->master_port, 29400);
  EXPECT_TRUE(r->agent_store);
  EXPECT_EQ(r->store_port(), 29401);  // torchrun's agent holds 29400
  EXPECT_EQ(r->restart, 2);
  auto message = [](std::map<std::string, std::string> vars) {
    try {
      Rendezvous::from_env(env(std::move(vars)));
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::map<std::string, std::string> ok = {
      {"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "29500"}};
  auto with = [&](const std::string& k, const std::string& v) {
    auto m = ok;
    m[k] = v;
    return m;
  };
  EXPECT_NE(message(with("RANK", "2")).find("RANK='2'"), std::string::npos);
  EXPECT_NE(message(with("MASTER_PORT", "http")).find("MASTER_PORT='http'"), std::string::npos);
  auto missing = ok;
  missing.erase("MASTER_ADDR");
  EXPECT_NE(message(missing).find("MASTER_ADDR is not set"), std::string::npos);
}

// --- two ranks in this process ------------------------------------------------------------------
// f(rank's communicator) on two threads, each rank joined over Gloo on loopback.
void on_two_ranks(const std::function<void(Communicator&)>& f) {
  Rendezvous r;
  r.world_size = 2;
  r.master_port = free_port();
  CommunicatorOptions options;
  options.timeout = std::chrono::seconds(120);
  std::exception_ptr failed[2];
  std::vector<std::thread> ranks;
  for (int rank = 0; rank < 2; ++rank)
    ranks.emplace_back([&, rank] {
      try {
        Rendezvous mine = r;
        mine.rank = rank;
        auto comm = connect(mine, options);
        f(*comm);
        comm->barrier();
      } catch (...) {
        failed[rank] = std::current_exception();
      }
    });
  for (auto& t : ranks) t.join();
  for (auto& e : failed)
    if (e) std::rethrow_exception(e);
}

TEST(C10dCommunicator, CollectivesOverGloo) {
  on_two_ranks([](Communicator& comm) {
    const int r = comm.rank();
    EXPECT_EQ(comm.size(), 2);
    EXPECT_EQ(comm.backend(), "gloo");
    auto t = torch::tensor({1.0f + r, 10.0f * r});
    comm.all_reduce_sum(t);
    EXPECT_TRUE(torch::equal(t, torch::tensor({3.0f, 10.0f})));
    auto m = torch::tensor({int64_t{r}, int64_t{5 - r}});
    comm.all_reduce_max(m);
    EXPECT_TRUE(torch::equal(m, torch::tensor({int64_t{1}, int64_t{5}})));
    const auto g = comm.all_gather(torch::full({2, 3}, static_cast<float>(r)));
    EXPECT_EQ(g.sizes(), (std::vector<int64_t>{4, 3}));
    EXPECT_EQ(g[3][0].item<float>(), 1.0f);
    auto b = torch::full({4}, static_cast<double>(r + 7));
    comm.broadcast(b, 1);
    EXPECT_TRUE(torch::equal(b, torch::full({4}, 8.0, torch::kDouble)));
    EXPECT_TRUE(comm.any(r == 1));
    EXPECT_FALSE(comm.any(false));
    EXPECT_EQ(comm.broadcast_text(r == 0 ? "from rank 0" : "", 0), "from rank 0");
    // Shares of 5 rows: 2 and 3, gathered in order.
    const auto [lo, hi] = share_of(5, r, 2);
    const auto all = all_gather_shares(comm, torch::arange(lo, hi, torch::kFloat), 5);
    EXPECT_TRUE(torch::equal(all, torch::arange(5, torch::kFloat)));
    if (r == 0) comm.announce("thing");
    if (r == 1) comm.await("thing", 0);
  });
}

// The ring base model, small and briefly pretrained, shared by the tests below.
VelocityFieldPtr ring_base() {
  static VelocityFieldPtr base =
      pretrained(*make_task("ring"), {{"type", "mlp"}, {"dim", 2}, {"hidden", 32}}, 300);
  return base;
}

Trainer make_trainer(const std::string& method, CommunicatorPtr comm, int64_t grad_accum) {
  auto cfg = Config::resolve(finetune_params(), "", {{"method", method}});
  cfg.apply_defaults(methods().get(method).preset);
  const auto base = ring_base();
  auto policy = clone_velocity_field(*base);
  for (auto& p : policy->parameters()) p.set_requires_grad(true);
  return Trainer(policy, frozen_copy(*base),
                 make_reward({{"type", "bump"}, {"center", {4.0, 0.0}}, {"scale", 2.5}}, 2),
                 methods().get(method).make(cfg),
                 TrainerOptions()
                     .sample_shape({2})
                     .groups(4)
                     .group_size(8)
                     .rollout(SampleOptions().steps(6))
                     .lr(cfg.number("lr"))
                     .minibatches(cfg.integer("minibatches"))
                     .grad_accum(grad_accum)
                     .old_decay(cfg.number("old_decay"))
                     .old_ramp(cfg.number("old_ramp"))
                     .seed(11),
                 {}, std::move(comm));
}

struct TrainedRun {
  std::vector<StepRecord> steps;
  torch::Tensor params;  // the policy's parameters, flat
};

TrainedRun train(Trainer& trainer, int64_t steps) {
  TrainedRun run;
  for (int64_t i = 0; i < steps; ++i) run.steps.push_back(trainer.step());
  std::vector<torch::Tensor> flat;
  for (const auto& p : trainer.policy().parameters()) flat.push_back(p.detach().reshape({-1}));
  run.params = torch::cat(flat);
  return run;
}

// Equal up to the summation order of the gradient's parts (the ranks' sum, then / W): 1e-5
// relative, and 2e-6 absolute near zero, where a deviation such as Flow-GRPO's max |ratio - 1| is a
// difference of float32 log-densities of magnitude ~5 that moves by a few of their last bits
// (4.8e-7 each) with the summation order (tests/same_metrics.py: the same tolerance).
void expect_same_run(const TrainedRun& a, const TrainedRun& b, const std::string& what) {
  auto close = [](double x, double y) {
    return std::abs(x - y) <= 1e-5 * std::max(std::abs(x), std::abs(y)) + 2e-6;
  };
  ASSERT_EQ(a.steps.size(), b.steps.size());
  for (size_t i = 0; i < a.steps.size(); ++i) {
    const StepRecord &x = a.steps[i], &y = b.steps[i];
    SCOPED_TRACE(what + ", step " + std::to_string(i + 1));
    EXPECT_TRUE(x.skipped.empty() && y.skipped.empty()) << x.skipped << y.skipped;
    EXPECT_TRUE(close(x.reward_mean, y.reward_mean)) << x.reward_mean << " vs " << y.reward_mean;
    EXPECT_TRUE(close(x.reward_std, y.reward_std));
    EXPECT_TRUE(close(x.loss, y.loss)) << x.loss << " vs " << y.loss;
    EXPECT_TRUE(close(x.grad_norm, y.grad_norm)) << x.grad_norm << " vs " << y.grad_norm;
    EXPECT_EQ(x.reward_evals, y.reward_evals);
    ASSERT_EQ(x.metrics.size(), y.metrics.size());
    for (const auto& [name, v] : x.metrics)
      EXPECT_TRUE(close(v, y.metrics.at(name)))
          << name << ": " << v << " vs " << y.metrics.at(name);
  }
  const double scale = a.params.abs().max().item<double>();
  EXPECT_LT((a.params - b.params).abs().max().item<double>(), 1e-5 * scale) << what;
}

class TwoRanks : public ::testing::TestWithParam<std::string> {};

TEST_P(TwoRanks, EqualOneProcessWithTheSameGlobalBatch) {
  const std::string method = GetParam();
  Trainer one = make_trainer(method, nullptr, 1);
  const TrainedRun alone = train(one, 3);
  TrainedRun ranks[2];
  on_two_ranks([&](Communicator& comm) {
    // A shared_ptr that does not own the thread's communicator.
    CommunicatorPtr mine(&comm, [](Communicator*) {});
    Trainer t = make_trainer(method, mine, 1);
    ranks[comm.rank()] = train(t, 3);
  });
  expect_same_run(alone, ranks[0], method + ": rank 0 against one process");
  // Every rank took the same updates: bit for bit the same parameters.
  EXPECT_TRUE(torch::equal(ranks[0].params, ranks[1].params));
}

INSTANTIATE_TEST_SUITE_P(Methods, TwoRanks, ::testing::Values("ram", "flow-grpo", "nft"),
                         testing::param_name);

TEST(GradAccum, MicroBatchesEqualOneBigBatch) {
  for (const std::string method : {"ram", "flow-grpo"}) {
    Trainer big = make_trainer(method, nullptr, 1), micro = make_trainer(method, nullptr, 4);
    expect_same_run(train(big, 3), train(micro, 3), method + ": 4 micro-batches");
  }
  // With two ranks as well: 2 ranks x 2 micro-batches.
  Trainer one = make_trainer("ram", nullptr, 1);
  const TrainedRun alone = train(one, 3);
  TrainedRun rank0;
  on_two_ranks([&](Communicator& comm) {
    CommunicatorPtr mine(&comm, [](Communicator*) {});
    Trainer t = make_trainer("ram", mine, 2);
    TrainedRun run = train(t, 3);
    if (comm.rank() == 0) rank0 = run;
  });
  expect_same_run(alone, rank0, "ram: 2 ranks x 2 micro-batches");
}

TEST(GradAccum, AMinibatchThatDoesNotSplitIsRefused) {
  try {
    make_trainer("ram", nullptr, 3);  // 32 endpoints in 3 micro-batches
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--grad-accum"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ramflow
