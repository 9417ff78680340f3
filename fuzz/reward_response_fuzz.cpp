// Fuzz target: the reward-server response parser. Any body either parses into exactly 3 finite
// scores (and terms of 3 finite values) or is refused with an InputError.
#include <cmath>

#include "fuzz_target.h"
#include "ramflow/errors.h"
#include "ramflow/reward_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  try {
    const auto r = ramflow::parse_reward_response(body, 3, "7-1");
    if (r.scores.numel() != 3 || !r.scores.isfinite().all().item<bool>()) std::abort();
    for (const auto& [name, t] : r.terms)
      if (t.numel() != 3 || !t.isfinite().all().item<bool>()) std::abort();
  } catch (const ramflow::InputError&) {
  } catch (const std::exception& e) {
    ramflow::fuzz::finding("reward_response", e);
  }
  return 0;
}
