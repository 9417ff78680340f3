// A reward served by another process over HTTP (protocol: include/ramflow/reward_protocol.h).
// Spec: {"type": "remote", "url": "http://host:port/path", "timeout": 60, "connect_timeout": 5,
//        "retries": 3, "backoff": 0.5, "max_bytes": 67108864, "encoding": "f32" | "png",
//        "overlap": false (true: score the batch in parts, each while the next is rolled out;
//        trainer.h), "token_env": "NAME" (optional: the bearer token is read from this environment
//        variable; the token itself is never in the spec, a log or a run directory)}.
// Not differentiable. Each call sends the whole batch as one request with a fresh id; the response
// is validated (protocol, id, count, finiteness) before any score is used.
#include <atomic>
#include <cstdlib>

#include <unistd.h>

#include <torch/torch.h>

#include "ramflow/config.h"
#include "ramflow/errors.h"
#include "ramflow/http_client.h"
#include "ramflow/reward.h"
#include "ramflow/reward_protocol.h"

namespace ramflow {
namespace {

class RemoteReward : public Reward {
 public:
  RemoteReward(std::string url, HttpOptions http, std::string encoding, std::string token_env,
               bool overlap)
      : url_(std::move(url)),
        http_(std::move(http)),
        encoding_(std::move(encoding)),
        token_env_(std::move(token_env)),
        overlap_(overlap) {}

  torch::Tensor score(const torch::Tensor& x0, const Condition& cond) const override {
    return score_terms(x0, cond).total;
  }
  ScoredBatch score_terms(const torch::Tensor& x0, const Condition& cond) const override {
    static std::atomic<uint64_t> counter{0};
    const std::string id = std::to_string(::getpid()) + "-" + std::to_string(counter++);
    const std::string body = encode_reward_request(x0, cond, id, encoding_);
    const HttpResponse response = http_post_json(url_, body, http_);
    RewardResponse parsed;
    try {
      parsed = parse_reward_response(response.body, x0.size(0), id);
    } catch (const InputError& e) {
      throw RemoteError("reward server " + url_ + ": " + e.what());
    }
    ScoredBatch out{parsed.scores.to(x0.device()), {}};
    for (auto& [name, t] : parsed.terms) out.terms[name] = t.to(x0.device());
    return out;
  }
  bool differentiable() const override { return false; }
  bool overlap() const override { return overlap_; }
  nlohmann::json spec() const override {
    nlohmann::json s = {{"type", "remote"},
                        {"url", url_},
                        {"timeout", http_.read_timeout()},
                        {"connect_timeout", http_.connect_timeout()},
                        {"retries", http_.retries()},
                        {"backoff", http_.backoff()},
                        {"max_bytes", http_.max_response_bytes()},
                        {"encoding", encoding_},
                        {"overlap", overlap_}};
    if (!token_env_.empty()) s["token_env"] = token_env_;  // the variable's name, never the token
    return s;
  }

 private:
  std::string url_;
  HttpOptions http_;
  std::string encoding_, token_env_;
  bool overlap_;
};

}  // namespace

RewardPtr make_remote_reward(const nlohmann::json& spec, int64_t /*dim*/) {
  SpecReader r(spec, "reward 'remote'");
  r.text("type");
  if (!r.has("url")) throw ConfigError("reward 'remote': field 'url' is required (--reward-url)");
  const std::string url = r.text("url");
  parse_http_url(url);  // ConfigError naming it
  HttpOptions http;
  http.read_timeout(r.number("timeout", 60.0))
      .connect_timeout(r.number("connect_timeout", 5.0))
      .backoff(r.number("backoff", 0.5));
  const double retries = r.number("retries", 3.0),
               max_bytes = r.number("max_bytes", 64.0 * (1 << 20));
  const std::string encoding = r.text("encoding", std::string("f32"));
  const std::string token_env = r.has("token_env") ? r.text("token_env") : std::string();
  bool overlap = false;
  if (r.has("overlap")) {
    const auto& v = r.value("overlap");
    if (!v.is_boolean()) throw ConfigError("reward 'remote': overlap must be true or false");
    overlap = v.get<bool>();
  }
  r.finish();
  if (!(http.read_timeout() > 0) || !(http.connect_timeout() > 0))
    throw ConfigError("reward 'remote': timeout and connect_timeout must be > 0 seconds");
  if (!(retries >= 0 && retries <= 100 && retries == static_cast<int64_t>(retries)))
    throw ConfigError("reward 'remote': retries must be an integer in [0, 100]");
  if (!(http.backoff() >= 0)) throw ConfigError("reward 'remote': backoff must be >= 0 seconds");
  if (!(max_bytes >= 1024)) throw ConfigError("reward 'remote': max_bytes must be >= 1024");
  if (encoding != "f32" && encoding != "png")
    throw ConfigError("reward 'remote': encoding must be f32 or png");
  http.retries(static_cast<int64_t>(retries)).max_response_bytes(static_cast<int64_t>(max_bytes));
  if (!token_env.empty()) {
    const char* token = std::getenv(token_env.c_str());
    if (!token || !*token)
      throw ConfigError("reward 'remote': token_env names " + token_env +
                        ", which is not set in the environment");
    http.bearer_token(token);
  }
  return std::make_shared<RemoteReward>(url, http, encoding, token_env, overlap);
}

}  // namespace ramflow
