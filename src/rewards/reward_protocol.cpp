// The reward-server protocol (see include/ramflow/reward_protocol.h and docs/reward-protocol.md).
#include "ramflow/reward_protocol.h"

#include <cmath>
#include <cstring>
#include <sstream>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "ramflow/errors.h"
#include "ramflow/image.h"

namespace ramflow {
namespace {
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Little-endian float32 bytes of a contiguous CPU float tensor (the machine's order is checked).
std::string le_float_bytes(const torch::Tensor& x) {
  const auto t = x.detach().to(torch::kCPU, torch::kFloat).contiguous();
  std::string out(static_cast<size_t>(t.numel()) * 4, '\0');
  const float* p = t.data_ptr<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    uint32_t u;
    std::memcpy(&u, p + i, 4);
    for (int k = 0; k < 4; ++k) out[4 * i + k] = static_cast<char>((u >> (8 * k)) & 0xff);
  }
  return out;
}

// A JSON array of exactly `batch` finite numbers -> float32 [batch]; `what` names it in errors.
torch::Tensor finite_list(const nlohmann::json& v, int64_t batch, const std::string& what) {
  if (!v.is_array()) throw InputError(what + " is not a list");
  if (static_cast<int64_t>(v.size()) != batch)
    throw InputError(what + " has " + std::to_string(v.size()) + " entries for a batch of " +
                     std::to_string(batch));
  auto out = torch::empty({batch}, torch::kFloat);
  float* p = out.data_ptr<float>();
  for (int64_t i = 0; i < batch; ++i) {
    const auto& e = v[static_cast<size_t>(i)];
    if (!e.is_number())
      throw InputError(what + "[" + std::to_string(i) + "] is not a number (" + e.dump() + ")");
    const double d = e.get<double>();
    if (!std::isfinite(d) || !std::isfinite(static_cast<float>(d)))
      throw InputError(what + "[" + std::to_string(i) + "] is not finite in float32 (" + e.dump() +
                       ")");
    p[i] = static_cast<float>(d);
  }
  return out;
}
}  // namespace

std::string base64_encode(const std::string& bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t n = (static_cast<uint8_t>(bytes[i]) << 16) |
                       (static_cast<uint8_t>(bytes[i + 1]) << 8) |
                       static_cast<uint8_t>(bytes[i + 2]);
    for (int k = 3; k >= 0; --k) out.push_back(kAlphabet[(n >> (6 * k)) & 63]);
  }
  if (i < bytes.size()) {
    uint32_t n = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out.push_back(kAlphabet[(n >> 18) & 63]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    out.push_back(i + 1 < bytes.size() ? kAlphabet[(n >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::string base64_decode(const std::string& text) {
  if (text.size() % 4 != 0)
    throw InputError("base64: length " + std::to_string(text.size()) + " is not a multiple of 4");
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = text[i + k];
      if (c == '=' && i + 4 == text.size() && k >= 2) {
        v[k] = 0;
        ++pad;
        continue;
      }
      if (pad > 0 || (v[k] = value(c)) < 0)
        throw InputError("base64: bad character at " + std::to_string(i + k));
    }
    const uint32_t n = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out.push_back(static_cast<char>((n >> 16) & 0xff));
    if (pad < 2) out.push_back(static_cast<char>((n >> 8) & 0xff));
    if (pad < 1) out.push_back(static_cast<char>(n & 0xff));
  }
  return out;
}

std::string encode_reward_request(const torch::Tensor& x0, const Condition& cond,
                                  const std::string& id, const std::string& encoding) {
  TORCH_CHECK(x0.dim() >= 1, "reward request: x0 must be [B, ...], got ", x0.sizes());
  nlohmann::json body = {{"protocol", kRewardProtocol},
                         {"id", id},
                         {"encoding", encoding},
                         {"shape", x0.sizes().vec()}};
  if (encoding == "f32") {
    body["data"] = base64_encode(le_float_bytes(x0));
  } else if (encoding == "png") {
    TORCH_CHECK(x0.dim() == 4 && (x0.size(1) == 1 || x0.size(1) == 3),
                "reward request: png needs images [B, 1 or 3, H, W], got ", x0.sizes());
    const auto bytes = to_bytes(x0.detach().to(torch::kCPU));  // [B, C, H, W] uint8
    nlohmann::json images = nlohmann::json::array();
    for (int64_t i = 0; i < bytes.size(0); ++i) {
      auto pixels =
          bytes[i].size(0) == 1 ? bytes[i][0] : bytes[i].permute({1, 2, 0});  // [H, W] or [H, W, 3]
      images.push_back(base64_encode(encode_png(pixels.contiguous())));
    }
    body["images"] = std::move(images);
  } else {
    throw ConfigError("reward request: encoding must be f32 or png, got '" + encoding + "'");
  }
  if (cond.defined()) {
    // Each sample's condition id (its class for a class-conditional task), and, where the task has
    // them, its text and metadata (added in the same protocol version: a server that reads only
    // "conditions" ignores them).
    const auto c = cond.id().to(torch::kCPU).contiguous();
    body["conditions"] =
        std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
    if (cond.table()) {
      auto prompts = nlohmann::json::array(), metadata = nlohmann::json::array();
      bool any_metadata = false;
      for (int64_t i = 0; i < cond.size(); ++i) {
        prompts.push_back(cond.text(i));
        metadata.push_back(cond.metadata(i));
        any_metadata = any_metadata || !metadata.back().is_null();
      }
      body["prompts"] = std::move(prompts);
      if (any_metadata) body["metadata"] = std::move(metadata);
    }
  } else {
    body["conditions"] = nullptr;
  }
  return body.dump();
}

RewardResponse parse_reward_response(const std::string& body, int64_t batch,
                                     const std::string& id) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(body);
  } catch (const nlohmann::json::out_of_range&) {
    throw InputError(
        "the response holds a number beyond any float (such as 1e999): a non-finite score");
  } catch (const nlohmann::json::exception&) {
    if (body.find("NaN") != std::string::npos || body.find("Infinity") != std::string::npos)
      throw InputError(
          "the response holds NaN or Infinity, which JSON does not allow: a non-finite score");
    std::string head = body.substr(0, 60);
    for (char& c : head)
      if (static_cast<unsigned char>(c) < 32) c = ' ';
    throw InputError("the response is not JSON (it begins '" + head + "')");
  }
  if (!j.is_object()) throw InputError("the response is not a JSON object");
  const auto protocol = j.find("protocol");
  if (protocol == j.end() || !protocol->is_string() ||
      protocol->get<std::string>() != kRewardProtocol)
    throw InputError(std::string("the response's protocol is not \"") + kRewardProtocol + "\"");
  const auto rid = j.find("id");
  if (rid == j.end() || !rid->is_string() || rid->get<std::string>() != id)
    throw InputError("the response's id is not the request's (" + id + ")");
  const auto scores = j.find("scores");
  if (scores == j.end()) throw InputError("the response has no \"scores\"");
  RewardResponse out;
  out.scores = finite_list(*scores, batch, "scores");
  if (const auto terms = j.find("terms"); terms != j.end() && !terms->is_null()) {
    if (!terms->is_object()) throw InputError("\"terms\" is not an object");
    for (const auto& [name, values] : terms->items()) {
      if (name.empty() || name.size() > 64)
        throw InputError("a term's name is empty or longer than 64 characters");
      out.terms[name] = finite_list(values, batch, "terms." + name);
    }
  }
  return out;
}

}  // namespace ramflow
