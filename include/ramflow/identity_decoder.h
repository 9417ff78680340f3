#pragma once
// The identity decoder `identity`, the default: decode(z) = z.
#include "ramflow/decoder.h"

namespace ramflow {

class IdentityDecoderImpl : public DecoderImpl {
 public:
  torch::Tensor forward(const torch::Tensor& z) override;
  std::vector<int64_t> decoded_shape(const std::vector<int64_t>& latent_shape) const override {
    return latent_shape;
  }
  nlohmann::json spec() const override { return {{"type", "identity"}}; }
};
TORCH_MODULE(IdentityDecoder);

}  // namespace ramflow
