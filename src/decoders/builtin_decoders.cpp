// The list of built-in decoders: one line per decoder. Adding a decoder = one file + one line here.
#include "ramflow/config.h"
#include "ramflow/decoder.h"
#include "ramflow/identity_decoder.h"
#include "ramflow/mlp_decoder.h"
#include "ramflow/vae_decoder.h"

namespace ramflow {
namespace {

void register_builtin_decoders(Registry<DecoderFactory>& r) {
  r.add(
      "identity",
      [](const nlohmann::json& spec) -> DecoderPtr {
        SpecReader s(spec, "decoder 'identity'");
        s.text("type");
        s.finish();
        return IdentityDecoder().ptr();
      },
      "the samples as they are (the default)");
  r.add(
      "mlp",
      [](const nlohmann::json& spec) -> DecoderPtr {
        return MLPDecoder(MLPDecoderOptions::from_json(spec)).ptr();
      },
      "a small learned perceptron from latents [d] to samples [D] (toy latent tasks)");
  r.add("vae", make_vae_decoder,
        "AutoencoderKL's decoder (SD3's VAE; fields: config, dtype, weights): latents [C, h, w] "
        "to images [3, 8h, 8w] in [-1, 1]");
}

}  // namespace

const Registry<DecoderFactory>& decoders() {
  static const Registry<DecoderFactory> registry = [] {
    Registry<DecoderFactory> r("decoder");
    register_builtin_decoders(r);
    return r;
  }();
  return registry;
}

}  // namespace ramflow
