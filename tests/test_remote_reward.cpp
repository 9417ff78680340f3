// Rewards served over HTTP: the protocol's encoding and parsing, the example server against the
// built-in rewards, and the client in every failure mode (a real server on loopback: down, slow,
// wrong count, NaN, a huge body, redirects, a 500 then success, a missing token), and a remote term
// inside a weighted sum, logged on its own by a real run.
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "helpers.h"
#include "ramflow/assets.h"
#include "ramflow/errors.h"
#include "ramflow/http_client.h"
#include "ramflow/image.h"
#include "ramflow/io.h"
#include "ramflow/jobs.h"
#include "ramflow/mlp_velocity.h"
#include "ramflow/ram.h"
#include "ramflow/reward.h"
#include "ramflow/reward_protocol.h"
#include "ramflow/rng.h"
#include "ramflow/trainer.h"

namespace fs = std::filesystem;

namespace ramflow {
namespace {

using testing::Server;

using testing::source;

Server& fault_server() {
  static Server server({source("tests/reward_fault_server.py")});
  return server;
}

RewardPtr remote(const std::string& url, nlohmann::json extra = nlohmann::json::object()) {
  nlohmann::json spec = {
      {"type", "remote"}, {"url", url}, {"timeout", 2.0}, {"retries", 1}, {"backoff", 0.01}};
  for (auto& [k, v] : extra.items()) spec[k] = v;
  return make_reward(spec, 2);
}

// The message of the RemoteError that scoring `x` with `reward` throws ("" if none).
std::string failure(const Reward& reward, const torch::Tensor& x) {
  try {
    score_checked(reward, x);
  } catch (const RemoteError& e) {
    return e.what();
  }
  return "";
}

TEST(RewardProtocol, Base64RoundTripAndErrors) {
  for (const std::string& s :
       std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)})
    EXPECT_EQ(base64_decode(base64_encode(s)), s);
  EXPECT_EQ(base64_encode("Man"), "TWFu");
  EXPECT_THROW(base64_decode("abc"), InputError);
  EXPECT_THROW(base64_decode("a$cd"), InputError);
  EXPECT_THROW(base64_decode("a=cd"), InputError);
}

TEST(RewardProtocol, RequestCarriesTheBatchExactlyAndResponsesAreValidated) {
  const auto x = torch::tensor({{1.5f, -2.0f}, {0.1f, 3.25f}});
  const auto body = nlohmann::json::parse(
      encode_reward_request(x, Condition::classes(torch::tensor({3, 7})), "r1", "f32"));
  EXPECT_EQ(body["protocol"], kRewardProtocol);
  EXPECT_EQ(body["shape"], nlohmann::json::array({2, 2}));
  EXPECT_EQ(body["conditions"], nlohmann::json::array({3, 7}));
  const std::string raw = base64_decode(body["data"].get<std::string>());
  ASSERT_EQ(raw.size(), 16u);
  float back[4];
  std::memcpy(back, raw.data(), 16);  // little-endian on every machine ramflow builds on
  EXPECT_EQ(back[0], 1.5f);
  EXPECT_EQ(back[3], 3.25f);

  const std::string ok =
      R"({"protocol": "ramflow-reward/1", "id": "r1", "scores": [0.5, -1], "terms": {"a": [1, 2]}})";
  const auto parsed = parse_reward_response(ok, 2, "r1");
  EXPECT_TRUE(torch::equal(parsed.scores, torch::tensor({0.5f, -1.0f})));
  EXPECT_TRUE(torch::equal(parsed.terms.at("a"), torch::tensor({1.0f, 2.0f})));
  auto why = [](const std::string& body, int64_t n = 2) {
    try {
      parse_reward_response(body, n, "r1");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(why(ok, 3).find("scores has 2 entries for a batch of 3"), std::string::npos);
  EXPECT_NE(why(R"({"protocol": "ramflow-reward/1", "id": "r2", "scores": [0, 0]})").find("id"),
            std::string::npos);
  EXPECT_NE(why(R"({"protocol": "ramflow-reward/1", "id": "r1", "scores": [0, NaN]})").find("NaN"),
            std::string::npos);
  EXPECT_NE(why(R"({"protocol": "ramflow-reward/1", "id": "r1", "scores": [0, 1e999]})")
                .find("non-finite"),
            std::string::npos);
  EXPECT_NE(why(R"({"protocol": "ramflow-reward/1", "id": "r1", "scores": [0, 1e39]})")
                .find("not finite in float32"),
            std::string::npos);
  EXPECT_NE(why(R"({"protocol": "other/2", "id": "r1", "scores": [0, 0]})").find("protocol"),
            std::string::npos);
  EXPECT_NE(why("<html>").find("not JSON"), std::string::npos);
  EXPECT_NE(why(R"({"protocol": "ramflow-reward/1", "id": "r1", "scores": [0, "1"]})")
                .find("scores[1] is not a number"),
            std::string::npos);
}

TEST(RewardProtocol, UrlsAreCheckedBeforeAnyRequest) {
  EXPECT_EQ(parse_http_url("http://localhost:8080/score").text(), "http://localhost:8080/score");
  EXPECT_EQ(parse_http_url("http://10.0.0.2").text(), "http://10.0.0.2:80/");
  EXPECT_EQ(parse_http_url("http://[::1]:9000/x").host, "::1");
  for (const char* bad : {"https://example.com/", "ftp://x/", "http://:80/", "http://h:99999/",
                          "http://u:p@h/", "http://h/a b"})
    EXPECT_THROW(parse_http_url(bad), ConfigError) << bad;
  EXPECT_THROW(make_reward({{"type", "remote"}}, 2), ConfigError);  // no url
  EXPECT_THROW(make_reward({{"type", "remote"}, {"url", "http://h/"}, {"encoding", "jpeg"}}, 2),
               ConfigError);
  EXPECT_THROW(
      make_reward({{"type", "remote"}, {"url", "http://h/"}, {"token_env", "RAMFLOW_NO_SUCH_VAR"}},
                  2),
      ConfigError);
}

// The example server gives the built-in bump's scores (float32 in, float64 there, float32 back).
TEST(RemoteReward, ExampleServerGivesTheBuiltInBumpsScores) {
  Server server({source("examples/reward_server.py"), "--port", "0", "--reward", "bump", "--center",
                 "4,0", "--scale", "2.5", "--height", "1.5"});
  auto builtin =
      make_reward({{"type", "bump"}, {"center", {4.0, 0.0}}, {"scale", 2.5}, {"height", 1.5}}, 2);
  auto served = remote(server.url());
  Rng rng(3);
  const auto x = 3.0 * rng.randn({256, 2});
  const auto a = score_checked(*builtin, x), b = score_checked(*served, x);
  EXPECT_TRUE(torch::allclose(a, b, 1e-6, 1e-7)) << (a - b).abs().max().item<double>();
  const auto terms = score_terms_checked(*served, x).terms;
  ASSERT_TRUE(terms.count("squared_distance"));
  EXPECT_TRUE(torch::allclose(terms.at("squared_distance"),
                              (x - torch::tensor({4.0f, 0.0f})).square().sum(1), 1e-5, 1e-5));
  // The spec rebuilds it (the reward contract asks the same of every reward).
  EXPECT_EQ(make_reward(served->spec(), 2)->spec(), served->spec());
}

// The classifier through the example server (Debian's python3-torch) against the built-in
// classifier reward, in both encodings: f32 exactly as sent, png quantised to bytes on both sides.
TEST(RemoteReward, ExampleServerGivesTheBuiltInClassifiersScores) {
  Server server({source("examples/reward_server.py"), "--port", "0", "--reward", "classifier"});
  auto builtin = make_reward({{"type", "classifier"}}, 28 * 28);
  Rng rng(4);
  const auto x = (0.6 * rng.randn({16, 1, 28, 28})).clamp(-1, 1);
  const auto labels = Condition::classes(torch::arange(16).remainder(10));
  for (const char* encoding : {"f32", "png"}) {
    auto served =
        make_reward({{"type", "remote"}, {"url", server.url()}, {"encoding", encoding}}, 28 * 28);
    // png carries bytes: the built-in reward scores the same bytes mapped back to [-1, 1].
    const auto seen =
        std::string(encoding) == "png" ? to_bytes(x).to(torch::kFloat) / 127.5 - 1.0 : x;
    const auto a = score_checked(*builtin, seen, labels), b = score_checked(*served, x, labels);
    EXPECT_TRUE(torch::allclose(a, b, 1e-4, 1e-4))
        << encoding << ": " << (a - b).abs().max().item<double>();
  }
}

TEST(RemoteReward, EveryFailureModeNamesTheUrlAndWhatWentWrong) {
  const std::string base = fault_server().url();
  const auto x = torch::tensor({{1.0f, 0.0f}, {2.0f, 0.0f}, {3.0f, 0.0f}});
  // A correct answer, and a sub-score.
  auto ok = score_terms_checked(*remote(base + "/ok"), x);
  EXPECT_TRUE(torch::equal(ok.total, torch::tensor({1.0f, 2.0f, 3.0f})));
  EXPECT_TRUE(torch::equal(ok.terms.at("twice"), torch::tensor({2.0f, 4.0f, 6.0f})));
  struct Case {
    std::string path, expect;
    nlohmann::json extra = nlohmann::json::object();
  };
  const std::vector<Case> cases = {
      {"/slow",
       "no complete response within the read timeout of 0.3",
       {{"timeout", 0.3}, {"retries", 0}}},
      {"/count", "scores has 2 entries for a batch of 3"},
      {"/nan", "NaN or Infinity"},
      {"/inf", "beyond any float"},
      {"/badid", "id is not the request's"},
      {"/huge", "exceeds the limit of 1048576 bytes", {{"max_bytes", 1 << 20}}},
      {"/huge-stream", "larger than the limit of 1048576 bytes", {{"max_bytes", 1 << 20}}},
      {"/redirect-other", "refused: ramflow never follows a redirect to another host"},
      {"/always500", "HTTP 500: the judge crashed (2 attempts)"},
      {"/garbage", "not an HTTP response"},
      {"/close", "closed the connection without a response"},
      {"/auth", "HTTP 401: missing or wrong bearer token (1 attempt)"},
      {"/nowhere", "HTTP 404"},
  };
  for (const auto& c : cases) {
    const std::string why = failure(*remote(base + c.path, c.extra), x);
    EXPECT_NE(why.find(base + c.path), std::string::npos) << c.path << ": " << why;
    EXPECT_NE(why.find(c.expect), std::string::npos) << c.path << ": " << why;
  }
  // A redirect on the same host is followed; a 500 then a success succeeds on the retry.
  EXPECT_TRUE(torch::equal(score_checked(*remote(base + "/redirect-same"), x),
                           torch::tensor({1.0f, 2.0f, 3.0f})));
  EXPECT_TRUE(
      torch::equal(score_checked(*remote(base + "/flaky"), x), torch::tensor({1.0f, 2.0f, 3.0f})));
  // The server down: a port nobody listens on (bound, then closed).
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  const std::string down = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/";
  const auto t0 = std::chrono::steady_clock::now();
  const std::string why = failure(*remote(down, {{"retries", 2}, {"backoff", 0.05}}), x);
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(why.find("cannot connect (Connection refused) (3 attempts)"), std::string::npos) << why;
  EXPECT_GE(waited,
            0.05 * 0.5 + 0.1 * 0.5);  // two backoffs: 0.05 and 0.1 s, each times U(0.5, 1.5)
}

// Scoring in parts while the rollout goes on (overlap) takes the same steps as one request per
// batch: the same endpoints, rewards and updates (up to the last bits of batched arithmetic), and a
// sum's terms.
TEST(RemoteReward, OverlappedScoringTakesTheSameSteps) {
  Server server(
      {source("examples/reward_server.py"), "--port", "0", "--center", "4,0", "--scale", "2.5"});
  auto trainer_with = [&](bool overlap) {
    auto base = make_velocity_field(MLPVelocityOptions(2).hidden(16).to_json(), 5);
    auto policy = clone_velocity_field(*base);
    for (auto& p : policy->parameters()) p.set_requires_grad(true);
    const nlohmann::json spec = {
        {"type", "sum"},
        {"terms", {{{"type", "remote"}, {"url", server.url()}, {"overlap", overlap}}}}};
    return Trainer(policy, frozen_copy(*base), make_reward(spec, 2),
                   std::make_unique<RAM>(RAMOptions()),
                   TrainerOptions()
                       .sample_shape({2})
                       .group_size(10)
                       .rollout(SampleOptions().steps(5))
                       .lr(1e-3)
                       .seed(2));
  };
  Trainer a = trainer_with(true), b = trainer_with(false);
  EXPECT_TRUE(
      make_reward({{"type", "remote"}, {"url", server.url()}, {"overlap", true}}, 2)->overlap());
  for (int i = 0; i < 3; ++i) {
    const auto ra = a.step(), rb = b.step();
    EXPECT_NEAR(ra.reward_mean, rb.reward_mean, 1e-6) << "step " << i;
    EXPECT_NEAR(ra.loss, rb.loss, 1e-4 * std::abs(rb.loss)) << "step " << i;
    EXPECT_NEAR(ra.metrics.at("reward/remote/squared_distance"),
                rb.metrics.at("reward/remote/squared_distance"), 1e-4);
    EXPECT_EQ(ra.nfe, rb.nfe);
  }
}

// The bearer token comes from the environment, goes in the Authorization header, and is never
// written.
TEST(RemoteReward, BearerTokenFromTheEnvironmentIsSentAndNeverWritten) {
  const std::string base = fault_server().url();
  const auto x = torch::tensor({{1.0f, 0.0f}});
  ::setenv("RAMFLOW_TEST_TOKEN", "sesame", 1);
  auto reward = remote(base + "/auth", {{"token_env", "RAMFLOW_TEST_TOKEN"}});
  EXPECT_TRUE(torch::equal(score_checked(*reward, x), torch::tensor({1.0f})));
  EXPECT_EQ(reward->spec().dump().find("sesame"), std::string::npos);
  ::setenv("RAMFLOW_TEST_TOKEN", "hunter2", 1);
  const std::string why =
      failure(*remote(base + "/auth", {{"token_env", "RAMFLOW_TEST_TOKEN"}}), x);
  EXPECT_NE(why.find("401"), std::string::npos) << why;
  EXPECT_EQ(why.find("hunter2"), std::string::npos)
      << why;  // the message does not repeat the token
  ::unsetenv("RAMFLOW_TEST_TOKEN");
}

// A real run whose reward is a weighted sum of a built-in term and a remote one: each term (and the
// remote one's sub-score) logged on its own in metrics.jsonl and the summary; the token's name, not
// the token, in config.json.
TEST(RemoteReward, WeightedSumWithARemoteTermLogsEachTerm) {
  const std::string base = fault_server().url();
  const auto out = (fs::path(::testing::TempDir()) / "ramflow_remote_run").string();
  remove_tree(out);
  ::setenv("RAMFLOW_TEST_TOKEN", "sesame", 1);
  const nlohmann::json reward = {
      {"type", "sum"},
      {"terms",
       {{{"type", "bump"}, {"center", {4.0, 0.0}}, {"scale", 2.5}, {"weight", 1.0}},
        {{"type", "remote"},
         {"url", base + "/auth"},
         {"token_env", "RAMFLOW_TEST_TOKEN"},
         {"weight", 0.01},
         {"name", "judge"}}}}};
  std::ostringstream log;
  auto summary =
      run_finetune(Config::resolve(finetune_params(), "",
                                   {{"out", out},
                                    {"reward", reward.dump()},
                                    {"cache_dir", out + "-cache"},
                                    {"model", R"({"type": "mlp", "dim": 2, "hidden": 16})"},
                                    {"pretrain_steps", "100"},
                                    {"steps", "3"},
                                    {"group_size", "8"},
                                    {"rollout_steps", "4"},
                                    {"eval_samples", "40"},
                                    {"eval_pool", "200"},
                                    {"eval_curve_samples", "40"},
                                    {"eval_kl_samples", "4"},
                                    {"eval_steps", "4"}}),
                   JobIO{log, false});
  ::unsetenv("RAMFLOW_TEST_TOKEN");
  std::ifstream metrics(out + "/metrics.jsonl");
  std::string line;
  std::getline(metrics, line);  // the evaluation at step 0
  std::getline(metrics, line);
  const auto step = nlohmann::json::parse(line);
  for (const char* key : {"reward/bump", "reward/judge", "reward/judge/twice"})
    EXPECT_TRUE(step.contains(key)) << key;
  EXPECT_NEAR(step["reward_mean"].get<double>(),
              step["reward/bump"].get<double>() + 0.01 * step["reward/judge"].get<double>(), 1e-5);
  for (const char* when : {"before", "after"})
    for (const char* key : {"bump", "judge", "judge/twice"})
      EXPECT_TRUE(summary[when]["reward_terms"].contains(key));
  const std::string config = read_file(out + "/config.json");
  EXPECT_NE(config.find("RAMFLOW_TEST_TOKEN"), std::string::npos);
  EXPECT_EQ(config.find("sesame"), std::string::npos);
}

}  // namespace
}  // namespace ramflow
