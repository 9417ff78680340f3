#pragma once
// The processes of a data-parallel run and what they exchange (docs/distributed.md). One
// interface: the single process, whose collectives do nothing, and torch's c10d (Gloo between CPU
// tensors, NCCL between CUDA tensors where LibTorch was built with it), joined through a TCPStore
// at the address that torchrun's variables give. Every collective is called by every rank in the
// same order; a collective that a lost rank never joins fails after the timeout (or at once, when
// its connection closes) with an error naming the lost rank where it can be found.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <torch/nn/module.h>
#include <torch/types.h>

namespace ramflow {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// "single", "gloo" or "nccl".
  virtual std::string backend() const = 0;
  /// Elementwise sum over the ranks, in place: every rank ends with the same values.
  virtual void all_reduce_sum(torch::Tensor& t) = 0;
  /// Elementwise maximum over the ranks, in place.
  virtual void all_reduce_max(torch::Tensor& t) = 0;
  /// The ranks' tensors (one shape on every rank) one after the other along dimension 0, in rank
  /// order: [n, ...] -> [size() n, ...].
  virtual torch::Tensor all_gather(const torch::Tensor& t) = 0;
  /// Every rank's `t` (one shape and dtype on every rank) becomes rank `root`'s.
  virtual void broadcast(torch::Tensor& t, int root = 0) = 0;
  virtual void barrier() = 0;

  /// Rank `from` says it has done `what` (its part of a long one-sided task: pretraining the base
  /// model), so that the others, waiting in await(), go on: no collective timeout applies.
  virtual void announce(const std::string& /*what*/) {}
  /// Waits until rank `from` announce()s `what`, however long it takes while rank `from` lives;
  /// DistributedError when it is lost meanwhile.
  virtual void await(const std::string& /*what*/, int /*from*/) {}

  bool leader() const { return rank() == 0; }
  /// True on every rank when `flag` is true on any (one collective): a stop signal that one rank
  /// received, a fault one rank met.
  bool any(bool flag);
  /// `text` of rank `root` on every rank (two collectives: its length, then its bytes).
  std::string broadcast_text(const std::string& text, int root = 0);
};
using CommunicatorPtr = std::shared_ptr<Communicator>;

/// The communicator of one process: rank 0 of 1, every collective leaves its tensor as it is.
CommunicatorPtr single_process();

/// Rank `rank`'s share of n rows split among `size` ranks: [rank n / size, (rank + 1) n / size).
std::pair<int64_t, int64_t> share_of(int64_t n, int rank, int size);
/// Each rank's share (share_of) of n rows, gathered on every rank in order: [n, ...]. The shares
/// differ by at most one row; they travel padded to the largest.
torch::Tensor all_gather_shares(Communicator& comm, const torch::Tensor& share, int64_t n);
/// Every parameter and buffer of `module` becomes rank `root`'s (one collective each).
void broadcast_module(Communicator& comm, torch::nn::Module& module, int root = 0);

/// Where the processes of a run meet: torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK,
/// MASTER_ADDR, MASTER_PORT). Rank 0 serves the rendezvous store at MASTER_ADDR:MASTER_PORT, or at
/// MASTER_PORT + 1 under torchrun (TORCHELASTIC_USE_AGENT_STORE): torchrun's agent holds
/// MASTER_PORT with a store of its own torch's protocol, which LibTorch 1.13's client does not
/// speak, so ramflow keeps its store beside it.
struct Rendezvous {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool agent_store = false;  // torchrun's agent holds MASTER_PORT: the store is at the next port
  /// The port of ramflow's store (store_port() below).
  int store_port() const { return agent_store ? master_port + 1 : master_port; }
  int restart = 0;  // TORCHELASTIC_RESTART_COUNT: keys of an earlier attempt are not read
  /// The rendezvous in the environment `get` reads (std::getenv's contract: null when unset):
  /// nullopt when WORLD_SIZE is unset. InputError naming the variable for a malformed or
  /// inconsistent value (RANK outside [0, WORLD_SIZE), a port outside [1, 65535], a variable
  /// missing beside WORLD_SIZE).
  static std::optional<Rendezvous> from_env(
      const std::function<const char*(const char*)>& get = nullptr);
};

struct CommunicatorOptions {
  /// How long a collective waits for the other ranks before it fails (a rank lost without its
  /// connection closing: a machine that went away).
  std::chrono::milliseconds timeout = std::chrono::seconds(300);
  /// "auto": NCCL when `device` is CUDA (and LibTorch has it), else Gloo; or "gloo", "nccl".
  std::string backend = "auto";
  torch::Device device = torch::kCPU;
};

/// The c10d communicator of the rendezvous: rank 0 serves the TCPStore (unless torchrun does),
/// every rank joins it, and the process group is made. InputError/RuntimeError naming the address
/// when the store cannot be reached within the timeout. A world of one is single_process().
CommunicatorPtr connect(const Rendezvous& rendezvous, const CommunicatorOptions& options = {});

/// Whether this LibTorch has the NCCL process group (a CUDA build with it).
bool has_nccl();

}  // namespace ramflow
