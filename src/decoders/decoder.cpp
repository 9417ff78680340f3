// What every decoder shares (see include/ramflow/decoder.h).
#include "ramflow/decoder.h"

#include <torch/torch.h>

#include "ramflow/errors.h"

namespace ramflow {

void DecoderImpl::reset_parameters(Rng&) {
  if (!parameters().empty())
    throw ConfigError("decoder '" + spec().value("type", std::string("?")) +
                      "' has parameters but does not override reset_parameters");
}

DecoderPtr make_decoder(const nlohmann::json& spec, uint64_t init_seed) {
  if (!spec.is_object() || !spec.contains("type") || !spec["type"].is_string())
    throw ConfigError("decoder spec must be a JSON object with a string \"type\", got " +
                      spec.dump());
  auto decoder = decoders().get(spec["type"].get<std::string>())(spec);
  Rng rng(init_seed);
  decoder->reset_parameters(rng);
  for (auto& p : decoder->parameters()) p.set_requires_grad(false);
  decoder->eval();
  return decoder;
}

nlohmann::json decoder_record(const nlohmann::json& spec, uint64_t init_seed) {
  return {{"spec", spec}, {"seed", init_seed}};
}

DecoderPtr decoder_from_meta(const nlohmann::json& meta) {
  if (!meta.is_object() || !meta.contains("decoder") || meta["decoder"].is_null()) return nullptr;
  const auto& r = meta["decoder"];
  if (!r.is_object() || !r.contains("spec") || !r.contains("seed") ||
      !r["seed"].is_number_unsigned())
    throw InputError("checkpoint metadata: \"decoder\" must be {\"spec\": ..., \"seed\": N}, got " +
                     r.dump());
  return make_decoder(r["spec"], r["seed"].get<uint64_t>());
}

torch::Tensor decode_samples(DecoderImpl& decoder, const torch::Tensor& z, int64_t chunk) {
  torch::NoGradGuard no_grad;
  const auto params = decoder.parameters();
  const auto device = params.empty() ? z.device() : params.front().device();
  std::vector<torch::Tensor> parts;
  for (int64_t i = 0; i < z.size(0); i += chunk) {
    const int64_t n = std::min(chunk, z.size(0) - i);
    parts.push_back(decoder.forward(z.narrow(0, i, n).to(device)).to(z.device()));
  }
  return torch::cat(parts, 0);
}

}  // namespace ramflow
