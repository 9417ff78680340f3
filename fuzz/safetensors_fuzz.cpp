// Fuzz target: the safetensors reader (load_safetensors, read_safetensors_metadata). Any input
// either loads, with every tensor's size matching its dtype and shape, or is refused with an
// InputError.
#include "fuzz_target.h"
#include "ramflow/errors.h"
#include "ramflow/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ramflow::fuzz::as_file(data, size, ".safetensors");
  try {
    ramflow::read_safetensors_metadata(path);
    const auto file = ramflow::load_safetensors(path);
    for (const auto& [name, t] : file.tensors)
      if (!t.is_contiguous() || t.numel() * static_cast<int64_t>(t.element_size()) < 0)
        std::abort();
  } catch (const ramflow::InputError&) {
  } catch (const std::exception& e) {
    ramflow::fuzz::finding("safetensors", e);
  }
  return 0;
}
