// Fuzz target: the IDX reader (plain and gzip). Any input either loads or is refused with an
// InputError.
#include "fuzz_target.h"
#include "ramflow/errors.h"
#include "ramflow/idx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ramflow::fuzz::as_file(data, size, ".idx");
  try {
    ramflow::read_idx(path);
  } catch (const ramflow::InputError&) {
  } catch (const std::exception& e) {
    ramflow::fuzz::finding("idx", e);
  }
  return 0;
}
