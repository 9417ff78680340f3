#pragma once
// The reward-server protocol, version 1: JSON over HTTP (docs/reward-protocol.md is the full text).
//
// Request: POST <url>, Content-Type: application/json
//   {"protocol": "ramflow-reward/1", "id": "<request id>", "encoding": "f32" | "png",
//    "shape": [B, ...],                     the batch's shape
//    "data": "<base64>",                    f32: the batch as little-endian float32, row-major
//    "images": ["<base64 PNG>", ...],       png: one 8-bit PNG per sample (x [B, C, H, W] in [-1,
//    1]) "conditions": [c_1, ..., c_B] | null,  each sample's condition id (its class label), or
//    null "prompts": ["<text>", ...],            optional: each condition's text (a class name, a
//    prompt) "metadata": [{...} | null, ...]}       optional: each condition's metadata (present if
//    any has some)
// Response: 200, Content-Type: application/json
//   {"protocol": "ramflow-reward/1", "id": "<the request's id>", "scores": [s_1, ..., s_B],
//    "terms": {"<name>": [B numbers], ...}}  optional named sub-scores, for logging
// Every score finite. An error is any other status, with {"error": "<message>"} as its body.
#include <map>
#include <string>

#include <torch/types.h>

#include "ramflow/condition.h"

namespace ramflow {

constexpr const char* kRewardProtocol = "ramflow-reward/1";

/// Base64 (RFC 4648, with padding).
std::string base64_encode(const std::string& bytes);
/// Decodes base64; throws InputError on a character outside the alphabet or a bad length.
std::string base64_decode(const std::string& text);

/// The request body for samples x0 [B, ...] (float), their conditions (B rows, or empty), request
/// `id`; `encoding` "f32" or "png" (png: x0 [B, 1 or 3, H, W] in [-1, 1], quantised to bytes).
std::string encode_reward_request(const torch::Tensor& x0, const Condition& cond,
                                  const std::string& id, const std::string& encoding);

struct RewardResponse {
  torch::Tensor scores;                        // [B] float32, finite
  std::map<std::string, torch::Tensor> terms;  // name -> [B] float32, finite
};
/// Parses and validates a response body for a batch of `batch` samples and request `id`: JSON
/// object, the protocol, the id, exactly `batch` finite numbers in "scores" and in each term.
/// Throws InputError saying what is wrong (never anything else, whatever the bytes: a fuzz target
/// holds it to that).
RewardResponse parse_reward_response(const std::string& body, int64_t batch, const std::string& id);

}  // namespace ramflow
