// torch's c10d behind the Communicator: a TCPStore, Gloo between CPU tensors and NCCL between CUDA
// tensors (see include/ramflow/communicator.h).
//
// Finding a lost rank. A collective whose peer died fails at once (its TCP connection closes) or
// after the timeout (a machine gone without a word); the error names an address, not a rank. So
// every rank bumps a counter in the store ("alive/<rank>") from a thread of its own twice a second,
// and a rank whose collective failed reads the counters twice, a few beats apart: the ranks whose
// counter stood still are the lost ones. If the store itself does not answer, the rank that served
// it (rank 0, unless torchrun serves it) is the lost one.
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef RAMFLOW_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <torch/torch.h>

#include "ramflow/communicator.h"
#include "ramflow/errors.h"

namespace ramflow {

bool has_nccl() {
#ifdef RAMFLOW_WITH_NCCL
  return true;
#else
  return false;
#endif
}

namespace {

constexpr auto kBeat = std::chrono::milliseconds(500);

// The address of this machine's interface that reaches `host` (a UDP socket "connected" to it sends
// nothing; getsockname says which local address the route picked): Gloo listens there, so a
// loopback rendezvous stays on loopback and each machine of several binds its own interface.
std::string local_address_towards(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || !found)
    throw DistributedError("MASTER_ADDR '" + host + "': no such host");
  std::string out;
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  if (fd >= 0 && ::connect(fd, found->ai_addr, found->ai_addrlen) == 0) {
    sockaddr_in local{};
    socklen_t len = sizeof local;
    char text[INET_ADDRSTRLEN] = {};
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0 &&
        ::inet_ntop(AF_INET, &local.sin_addr, text, sizeof text))
      out = text;
  }
  if (fd >= 0) ::close(fd);
  freeaddrinfo(found);
  if (out.empty()) throw DistributedError("MASTER_ADDR '" + host + "': no route to it");
  return out;
}

c10::intrusive_ptr<c10d::TCPStore> open_store(const Rendezvous& r, bool serve,
                                              std::chrono::milliseconds timeout, bool count) {
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(r.store_port());
  o.isServer = serve;
  if (count) o.numWorkers = static_cast<std::size_t>(r.world_size);
  o.waitWorkers = count;
  o.timeout = timeout;
  return c10::make_intrusive<c10d::TCPStore>(r.master_addr, o);
}

class C10dCommunicator final : public Communicator {
 private:
  // f(the process group): Gloo's or NCCL's (in LibTorch 1.13 both are ProcessGroups, in 2.x
  // Backends; the collectives have one signature).
  template <class F>
  auto on_group(F&& f) {
#ifdef RAMFLOW_WITH_NCCL
    if (nccl_) return f(*nccl_);
#endif
    return f(*gloo_);
  }

 public:
  C10dCommunicator(const Rendezvous& r, const CommunicatorOptions& options) : r_(r) {
    const std::string where = r.master_addr + ":" + std::to_string(r.store_port());
    const bool serve = r.rank == 0;
    try {
      store_ = open_store(r, serve, options.timeout, /*count=*/true);
    } catch (const std::exception& e) {
      throw DistributedError("rank " + std::to_string(r.rank) + " of " +
                             std::to_string(r.world_size) + ": the store at " + where +
                             (serve ? " could not be served" : " did not answer") + " (" +
                             first_line(e.what()) + ")");
    }
    // Keys of this attempt only (torchrun restarts reuse its store).
    prefix_ = "ramflow/attempt_" + std::to_string(r.restart);
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>(prefix_, store_);
    backend_ =
        options.backend == "auto" ? (options.device.is_cuda() ? "nccl" : "gloo") : options.backend;
    if (backend_ == "nccl") {
#ifdef RAMFLOW_WITH_NCCL
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = options.timeout;
      nccl_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, r.rank, r.world_size, o);
      device_ = options.device;
#else
      throw ConfigError(
          "the NCCL backend: this LibTorch was built without it (a CUDA LibTorch "
          "has it); use gloo");
#endif
    } else if (backend_ == "gloo") {
      auto o = c10d::ProcessGroupGloo::Options::create(options.timeout);
      // GLOO_SOCKET_IFNAME names the interface, as for torch; else the one that reaches the store.
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      o->devices.push_back(ifname && *ifname
                               ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                               : c10d::ProcessGroupGloo::createDeviceForHostname(
                                     local_address_towards(r.master_addr, r.master_port)));
      o->threads = 2;
      gloo_ = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, r.rank, r.world_size, o);
    } else {
      throw ConfigError("--dist-backend: '" + backend_ + "' is not gloo, nccl or auto");
    }
    heartbeat_ = std::thread([this, r, timeout = options.timeout] { beat(r, timeout); });
  }

  ~C10dCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (heartbeat_.joinable()) heartbeat_.join();
  }

  int rank() const override { return r_.rank; }
  int size() const override { return r_.world_size; }
  std::string backend() const override { return backend_; }

  void all_reduce_sum(torch::Tensor& t) override { all_reduce(t, c10d::ReduceOp::SUM); }
  void all_reduce_max(torch::Tensor& t) override { all_reduce(t, c10d::ReduceOp::MAX); }

  torch::Tensor all_gather(const torch::Tensor& t) override {
    auto in = staged(t);
    std::vector<at::Tensor> inputs = {in};
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (int i = 0; i < size(); ++i) outputs[0].push_back(torch::empty_like(in));
    run("all_gather",
        [&] { return on_group([&](auto& g) { return g.allgather(outputs, inputs); }); });
    return torch::cat(outputs[0], 0).to(t.device());
  }

  void broadcast(torch::Tensor& t, int root) override {
    auto x = staged(t);
    std::vector<at::Tensor> v = {x};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    run("broadcast", [&] { return on_group([&](auto& g) { return g.broadcast(v, o); }); });
    if (!x.is_same(t)) t.copy_(x);
  }

  void announce(const std::string& what) override {
    const std::string v = "1";
    store_->set(prefix_ + "/done/" + what, std::vector<uint8_t>(v.begin(), v.end()));
  }

  void await(const std::string& what, int from) override {
    const std::string key = prefix_ + "/done/" + what,
                      alive = "ramflow/alive/" + std::to_string(from);
    int64_t last = -1;
    auto since = std::chrono::steady_clock::now();
    try {
      while (!store_->check({key})) {
        const int64_t beats = store_->add(alive, 0);
        const auto now = std::chrono::steady_clock::now();
        if (beats != last) {
          last = beats;
          since = now;
        } else if (now - since > 8 * kBeat) {
          throw DistributedError("rank " + std::to_string(r_.rank) + " of " +
                                 std::to_string(r_.world_size) + ": lost rank " +
                                 std::to_string(from) +
                                 " (its heartbeat stopped) while waiting "
                                 "for it to finish '" +
                                 what + "'");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    } catch (const DistributedError&) {
      throw;
    } catch (const std::exception& e) {
      throw DistributedError("rank " + std::to_string(r_.rank) +
                             ": lost the store while waiting "
                             "for rank " +
                             std::to_string(from) + " to finish '" + what + "' (" +
                             first_line(e.what()) + ")");
    }
  }

  void barrier() override {
    run("barrier", [&] { return on_group([](auto& g) { return g.barrier(); }); });
  }

 private:
  static std::string first_line(const std::string& s) {
    const auto at = s.find('\n');
    return at == std::string::npos ? s : s.substr(0, at);
  }

  // The tensor a collective works on: contiguous, on the CPU for Gloo and on the device for NCCL.
  torch::Tensor staged(const torch::Tensor& t) const {
    if (backend_ == "nccl") return t.to(device_).contiguous();
    return t.to(torch::kCPU).contiguous();
  }

  void all_reduce(torch::Tensor& t, c10d::ReduceOp op) {
    auto x = staged(t);
    std::vector<at::Tensor> v = {x};
    c10d::AllreduceOptions o;
    o.reduceOp = op;
    run("all_reduce", [&] { return on_group([&](auto& g) { return g.allreduce(v, o); }); });
    if (!x.is_same(t)) t.copy_(x);
  }

  template <class F>
  void run(const char* what, F&& start) {
    try {
      auto work = start();
      work->wait();
    } catch (const std::exception& e) {
      throw DistributedError("rank " + std::to_string(r_.rank) + " of " +
                             std::to_string(r_.world_size) + ": " + what +
                             " failed: " + lost_text() + " (" + first_line(e.what()) + ")");
    }
  }

  // The heartbeat: "alive/<rank>" counts up every kBeat on a store connection of its own.
  void beat(const Rendezvous& r, std::chrono::milliseconds timeout) {
    try {
      auto store = open_store(r, /*serve=*/false, timeout, /*count=*/false);
      const std::string key = "ramflow/alive/" + std::to_string(r.rank);
      std::unique_lock<std::mutex> lock(mutex_);
      while (!stopping_) {
        lock.unlock();
        store->add(key, 1);
        lock.lock();
        wake_.wait_for(lock, kBeat, [this] { return stopping_; });
      }
    } catch (const std::exception&) {
      // The store is gone (its server ended): nothing more to say, and lost_text() will find it.
    }
  }

  // Which ranks stopped beating, read from the store.
  std::string lost_text() {
    try {
      auto store = open_store(r_, /*serve=*/false, std::chrono::milliseconds(5000), false);
      auto read = [&] {
        std::vector<int64_t> n;
        for (int i = 0; i < r_.world_size; ++i)
          n.push_back(store->add("ramflow/alive/" + std::to_string(i), 0));
        return n;
      };
      const auto before = read();
      std::this_thread::sleep_for(4 * kBeat);
      const auto after = read();
      std::string lost;
      for (int i = 0; i < r_.world_size; ++i)
        if (i != r_.rank && after[i] == before[i])
          lost += (lost.empty() ? "" : ", ") + std::to_string(i);
      if (lost.empty()) return "every rank is still alive";
      return "lost rank " + lost + " (its heartbeat stopped)";
    } catch (const std::exception&) {
      return "lost rank 0 (it served the store, which no longer answers)";
    }
  }

  Rendezvous r_;
  std::string prefix_;  // the keys of this attempt
  std::string backend_;
  torch::Device device_ = torch::kCPU;
  c10::intrusive_ptr<c10d::TCPStore> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo_;
#ifdef RAMFLOW_WITH_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl_;
#endif
  std::thread heartbeat_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
};

}  // namespace

CommunicatorPtr connect(const Rendezvous& rendezvous, const CommunicatorOptions& options) {
  if (rendezvous.world_size == 1) return single_process();
  return std::make_shared<C10dCommunicator>(rendezvous, options);
}

}  // namespace ramflow
