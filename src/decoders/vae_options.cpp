// The VAE decoder's config: AutoencoderKL's config.json fields (see include/ramflow/vae_decoder.h).
#include <cmath>

#include "ramflow/config.h"
#include "ramflow/errors.h"
#include "ramflow/vae_decoder.h"

namespace ramflow {
nlohmann::json VAEDecoderOptions::to_json() const {
  return {{"_class_name", "AutoencoderKL"},
          {"latent_channels", latent_channels()},
          {"out_channels", out_channels()},
          {"block_out_channels", block_out_channels()},
          {"layers_per_block", layers_per_block()},
          {"norm_num_groups", norm_num_groups()},
          {"scaling_factor", scaling_factor()},
          {"shift_factor", shift_factor()},
          {"use_post_quant_conv", use_post_quant_conv()},
          {"mid_block_add_attention", mid_block_add_attention()}};
}

VAEDecoderOptions VAEDecoderOptions::from_json(const nlohmann::json& config,
                                               const std::string& source) {
  if (!config.is_object()) throw ConfigError(source + ": must be a JSON object");
  SpecReader r(config, source);
  // diffusers' bookkeeping and the encoder's fields: not the decoder's business.
  for (const char* skip :
       {"_class_name", "_diffusers_version", "_name_or_path", "_use_default_values", "in_channels",
        "down_block_types", "sample_size", "force_upcast", "use_quant_conv"})
    if (r.has(skip)) r.value(skip);
  VAEDecoderOptions o;
  o.latent_channels(r.integer("latent_channels", 4));  // diffusers' defaults where absent
  o.out_channels(r.integer("out_channels", 3));
  if (r.has("block_out_channels")) {
    const auto& b = r.value("block_out_channels");
    std::vector<int64_t> ch;
    if (b.is_array())
      for (const auto& c : b)
        if (c.is_number_integer() && c.get<int64_t>() >= 1) ch.push_back(c.get<int64_t>());
    if (ch.empty() || ch.size() != b.size() || ch.size() > 8)
      throw ConfigError(source +
                        ": 'block_out_channels' must be a list of 1 to 8 positive integers");
    o.block_out_channels(ch);
  } else {
    o.block_out_channels({64});
  }
  o.layers_per_block(r.integer("layers_per_block", 1));
  o.norm_num_groups(r.integer("norm_num_groups", 32));
  o.scaling_factor(r.number("scaling_factor", 0.18215));
  if (r.has("shift_factor")) {
    const auto& s = r.value("shift_factor");
    if (!s.is_null() && !s.is_number())
      throw ConfigError(source + ": 'shift_factor' must be a number or null");
    o.shift_factor(s.is_null() ? 0.0 : s.get<double>());
  } else {
    o.shift_factor(0.0);
  }
  o.use_post_quant_conv(r.flag("use_post_quant_conv", true));
  o.mid_block_add_attention(r.flag("mid_block_add_attention", true));
  if (r.has("up_block_types")) {
    const auto& u = r.value("up_block_types");
    bool ok = u.is_array() && u.size() == o.block_out_channels().size();
    if (ok)
      for (const auto& t : u) ok = ok && t == "UpDecoderBlock2D";
    if (!ok)
      throw ConfigError(source +
                        ": 'up_block_types' must be \"UpDecoderBlock2D\" for each of "
                        "block_out_channels (the only decoder block of this port)");
  }
  if (r.has("act_fn") && r.value("act_fn") != "silu")
    throw ConfigError(source + ": 'act_fn' is " + r.value("act_fn").dump() +
                      "; this port computes \"silu\"");
  for (const char* key : {"latents_mean", "latents_std"})
    if (r.has(key) && !r.value(key).is_null())
      throw ConfigError(source + ": '" + key +
                        "' is set; this port decodes with scaling_factor "
                        "and shift_factor only");
  r.finish();
  if (o.scaling_factor() == 0) throw ConfigError(source + ": 'scaling_factor' must not be 0");
  for (auto c : o.block_out_channels())
    if (c % o.norm_num_groups() != 0)
      throw ConfigError(source + ": norm_num_groups " + std::to_string(o.norm_num_groups()) +
                        " does not divide the block width " + std::to_string(c));
  return o;
}

}  // namespace ramflow
