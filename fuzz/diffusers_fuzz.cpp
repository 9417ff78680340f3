// Fuzz target: the readers of diffusers' files. The first byte picks the reader, the rest is the
// file's text: a sharded weights index (component_weight_files on a folder holding it), an SD3
// transformer config.json or an AutoencoderKL config.json (parsed strictly, then read into their
// options). Any input is accepted or refused with an InputError or ConfigError.
#include <filesystem>
#include <fstream>

#include "fuzz_target.h"
#include "ramflow/config.h"
#include "ramflow/diffusers_files.h"
#include "ramflow/errors.h"
#include "ramflow/sd3_transformer.h"
#include "ramflow/vae_decoder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 3) {
      case 0: {
        // A folder with the index alone: every shard it names is missing, or the index is refused.
        static const std::string dir = [] {
          const auto d =
              std::filesystem::path(ramflow::fuzz::as_file(nullptr, 0, "")).string() + "_dir";
          std::filesystem::create_directories(d);
          return d;
        }();
        std::ofstream(dir + "/diffusion_pytorch_model.safetensors.index.json", std::ios::binary)
            << text;
        ramflow::component_weight_files(dir);
        break;
      }
      case 1:
        ramflow::SD3TransformerOptions::from_json(ramflow::parse_json_strict(text, "config.json"));
        break;
      default:
        ramflow::VAEDecoderOptions::from_json(ramflow::parse_json_strict(text, "config.json"));
    }
  } catch (const ramflow::InputError&) {
  } catch (const ramflow::ConfigError&) {
  } catch (const std::exception& e) {
    ramflow::fuzz::finding("diffusers", e);
  }
  return 0;
}
