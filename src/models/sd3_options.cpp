// The SD3 transformer's config: diffusers' config.json fields (see
// include/ramflow/sd3_transformer.h).
#include <cmath>

#include "ramflow/config.h"
#include "ramflow/errors.h"
#include "ramflow/sd3_transformer.h"

namespace ramflow {
nlohmann::json SD3TransformerOptions::to_json() const {
  nlohmann::json j = {{"_class_name", "SD3Transformer2DModel"},
                      {"sample_size", sample_size()},
                      {"patch_size", patch_size()},
                      {"in_channels", in_channels()},
                      {"num_layers", num_layers()},
                      {"attention_head_dim", attention_head_dim()},
                      {"num_attention_heads", num_attention_heads()},
                      {"joint_attention_dim", joint_attention_dim()},
                      {"caption_projection_dim", caption_projection_dim()},
                      {"pooled_projection_dim", pooled_projection_dim()},
                      {"out_channels", out_channels()},
                      {"pos_embed_max_size", pos_embed_max_size()},
                      {"dual_attention_layers", dual_attention_layers()}};
  j["qk_norm"] = qk_norm().empty() ? nlohmann::json(nullptr) : nlohmann::json(qk_norm());
  return j;
}

SD3TransformerOptions SD3TransformerOptions::from_json(const nlohmann::json& config,
                                                       const std::string& source) {
  if (!config.is_object()) throw ConfigError(source + ": must be a JSON object");
  SpecReader r(config, source);
  for (const char* skip :
       {"_class_name", "_diffusers_version", "_name_or_path", "_use_default_values"})
    if (r.has(skip)) r.value(skip);
  SD3TransformerOptions o;
  o.sample_size(r.integer("sample_size", o.sample_size()));
  o.patch_size(r.integer("patch_size", o.patch_size()));
  o.in_channels(r.integer("in_channels", o.in_channels()));
  o.num_layers(r.integer("num_layers", o.num_layers()));
  o.attention_head_dim(r.integer("attention_head_dim", o.attention_head_dim()));
  o.num_attention_heads(r.integer("num_attention_heads", o.num_attention_heads()));
  o.joint_attention_dim(r.integer("joint_attention_dim", o.joint_attention_dim()));
  o.caption_projection_dim(r.integer("caption_projection_dim", o.caption_projection_dim()));
  o.pooled_projection_dim(r.integer("pooled_projection_dim", o.pooled_projection_dim()));
  o.out_channels(r.integer("out_channels", o.out_channels()));
  o.pos_embed_max_size(r.integer("pos_embed_max_size", o.pos_embed_max_size()));
  if (r.has("dual_attention_layers")) {
    const auto& d = r.value("dual_attention_layers");
    if (!d.is_array()) throw ConfigError(source + ": 'dual_attention_layers' must be a list");
    std::vector<int64_t> layers;
    for (const auto& i : d) {
      if (!i.is_number_integer() || i.get<int64_t>() < 0 || i.get<int64_t>() >= o.num_layers())
        throw ConfigError(
            source + ": 'dual_attention_layers' holds " + i.dump() +
            ", not a layer index below num_layers = " + std::to_string(o.num_layers()));
      layers.push_back(i.get<int64_t>());
    }
    o.dual_attention_layers(layers);
  }
  if (r.has("qk_norm")) {
    const auto& q = r.value("qk_norm");
    if (!q.is_null() && !(q.is_string() && q.get<std::string>() == "rms_norm"))
      throw ConfigError(source + ": 'qk_norm' is " + q.dump() +
                        "; this port supports null and \"rms_norm\" (SD3, SD3.5)");
    o.qk_norm(q.is_null() ? "" : "rms_norm");
  }
  r.finish();
  if (o.caption_projection_dim() != o.dim())
    throw ConfigError(
        source + ": caption_projection_dim " + std::to_string(o.caption_projection_dim()) +
        " must equal num_attention_heads x attention_head_dim = " + std::to_string(o.dim()));
  if (o.dim() % 4 != 0)
    throw ConfigError(source + ": the width " + std::to_string(o.dim()) +
                      " must be a multiple of 4 (the 2-D sin-cos position table)");
  return o;
}

std::vector<std::string> sd3_lora_targets() {
  return {"attn.to_q",       "attn.to_k",       "attn.to_v",       "attn.to_out.0",
          "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out"};
}

SD3TransformerOptions sd35_medium_options() {
  SD3TransformerOptions o;
  o.num_layers(24).num_attention_heads(24).attention_head_dim(64).caption_projection_dim(1536);
  o.pos_embed_max_size(384).qk_norm("rms_norm");
  std::vector<int64_t> dual(13);
  for (int64_t i = 0; i < 13; ++i) dual[i] = i;
  o.dual_attention_layers(dual);
  return o;
}

}  // namespace ramflow
