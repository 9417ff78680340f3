// The single process's communicator, the collectives built on the primitives, and torchrun's
// variables (see include/ramflow/communicator.h).
#include "ramflow/communicator.h"

#include <cstdlib>
#include <cstring>
#include <optional>

#include <torch/torch.h>

#include "ramflow/errors.h"

namespace ramflow {

bool Communicator::any(bool flag) {
  if (size() == 1) return flag;
  auto t = torch::full({1}, flag ? int64_t{1} : int64_t{0}, torch::kLong);
  all_reduce_max(t);
  return t.item<int64_t>() != 0;
}

std::string Communicator::broadcast_text(const std::string& text, int root) {
  if (size() == 1) return text;
  auto n = torch::full({1}, static_cast<int64_t>(text.size()), torch::kLong);
  broadcast(n, root);
  auto bytes = torch::zeros({n.item<int64_t>()}, torch::kUInt8);
  if (rank() == root && !text.empty())
    std::memcpy(bytes.data_ptr<uint8_t>(), text.data(), text.size());
  if (bytes.numel() > 0) broadcast(bytes, root);
  return std::string(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()),
                     static_cast<size_t>(bytes.numel()));
}

namespace {

class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "single"; }
  void all_reduce_sum(torch::Tensor&) override {}
  void all_reduce_max(torch::Tensor&) override {}
  torch::Tensor all_gather(const torch::Tensor& t) override { return t; }
  void broadcast(torch::Tensor&, int) override {}
  void barrier() override {}
};

// A whole decimal number in [lo, hi] from variable `name`, or InputError naming it.
int int_var(const char* name, const char* value, int lo, int hi) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(value, &end, 10);
  if (errno != 0 || end == value || *end != '\0' || v < lo || v > hi)
    throw InputError(std::string("environment variable ") + name + "='" + value +
                     "': expected a whole number in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]");
  return static_cast<int>(v);
}

}  // namespace

CommunicatorPtr single_process() { return std::make_shared<SingleProcess>(); }

std::pair<int64_t, int64_t> share_of(int64_t n, int rank, int size) {
  return {rank * n / size, (rank + 1) * n / size};
}

torch::Tensor all_gather_shares(Communicator& comm, const torch::Tensor& share, int64_t n) {
  const int W = comm.size();
  if (W == 1) return share;
  const int64_t most = (n + W - 1) / W;
  const auto [lo, hi] = share_of(n, comm.rank(), W);
  TORCH_CHECK(share.size(0) == hi - lo, "all_gather_shares: rank ", comm.rank(), " holds ",
              share.size(0), " rows of its share [", lo, ", ", hi, ") of ", n);
  std::vector<int64_t> padded_shape = share.sizes().vec();
  padded_shape[0] = most;
  auto padded = torch::zeros(padded_shape, share.options());
  padded.narrow(0, 0, hi - lo).copy_(share);
  const auto all = comm.all_gather(padded);  // [W most, ...]
  std::vector<torch::Tensor> parts;
  for (int w = 0; w < W; ++w) {
    const auto [a, b] = share_of(n, w, W);
    parts.push_back(all.narrow(0, w * most, b - a));
  }
  return torch::cat(parts, 0);
}

void broadcast_module(Communicator& comm, torch::nn::Module& module, int root) {
  if (comm.size() == 1) return;
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) {
    auto data = p.detach();
    comm.broadcast(data, root);
  }
  for (auto& b : module.buffers()) comm.broadcast(b, root);
}

std::optional<Rendezvous> Rendezvous::from_env(
    const std::function<const char*(const char*)>& get_in) {
  const auto get =
      get_in ? get_in : [](const char* name) -> const char* { return std::getenv(name); };
  const char* world = get("WORLD_SIZE");
  if (!world || !*world) return std::nullopt;
  Rendezvous r;
  r.world_size = int_var("WORLD_SIZE", world, 1, 1 << 20);
  auto required = [&](const char* name) {
    const char* v = get(name);
    if (!v || !*v)
      throw InputError(std::string("environment variable ") + name +
                       " is not set, and WORLD_SIZE=" + world +
                       " is (torchrun and ramflow launch set RANK, WORLD_SIZE, MASTER_ADDR "
                       "and MASTER_PORT together)");
    return v;
  };
  if (r.world_size == 1 && !get("RANK")) return r;  // one process: nothing to meet
  r.rank = int_var("RANK", required("RANK"), 0, r.world_size - 1);
  const char* local = get("LOCAL_RANK");
  r.local_rank = local && *local ? int_var("LOCAL_RANK", local, 0, 1 << 20) : r.rank;
  r.master_addr = required("MASTER_ADDR");
  r.master_port = int_var("MASTER_PORT", required("MASTER_PORT"), 1, 65535);
  const char* agent = get("TORCHELASTIC_USE_AGENT_STORE");
  r.agent_store = agent && (std::string(agent) == "True" || std::string(agent) == "1" ||
                            std::string(agent) == "true");
  if (r.agent_store && r.master_port == 65535)
    throw InputError(
        "environment variable MASTER_PORT=65535: under torchrun ramflow's store takes "
        "the next port; choose a lower --master-port");
  const char* restart = get("TORCHELASTIC_RESTART_COUNT");
  r.restart = restart && *restart ? int_var("TORCHELASTIC_RESTART_COUNT", restart, 0, 1 << 20) : 0;
  return r;
}

}  // namespace ramflow
