// Condition batches (see include/ramflow/condition.h).
#include "ramflow/condition.h"
#include "ramflow/strings.h"

#include <torch/torch.h>

namespace ramflow {

std::string ConditionTable::condition_text(int64_t id) const {
  return id == kNullId ? std::string() : "condition " + std::to_string(id);
}

Condition::Condition(torch::Tensor id, Tensors tensors, std::shared_ptr<const ConditionTable> table)
    : id_(std::move(id)), tensors_(std::move(tensors)), table_(std::move(table)) {
  TORCH_CHECK(id_.defined() && id_.dim() == 1 && id_.scalar_type() == torch::kLong,
              "Condition: id must be [B] int64, got ",
              id_.defined() ? id_.sizes() : c10::IntArrayRef{});
  for (const auto& [name, t] : tensors_)
    TORCH_CHECK(t.defined() && t.dim() >= 1 && t.size(0) == id_.size(0), "Condition: tensor '",
                name, "' has ", t.defined() ? t.sizes() : c10::IntArrayRef{}, ", not ", id_.size(0),
                " rows");
}

Condition Condition::classes(const torch::Tensor& labels,
                             std::shared_ptr<const ConditionTable> table) {
  const auto id = labels.to(torch::kLong);
  return Condition(id, {{"label", id}}, std::move(table));
}

const torch::Tensor& Condition::at(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    std::vector<std::string> names;
    for (const auto& [n, t] : tensors_) names.push_back(n);
    TORCH_CHECK(false, "Condition: no tensor '", name,
                "' (it has: ", names.empty() ? "none" : join(names), ")");
  }
  return it->second;
}

std::string Condition::text(int64_t i) const {
  if (!table_) return {};
  return table_->condition_text(id_[i].item<int64_t>());
}

nlohmann::json Condition::metadata(int64_t i) const {
  if (!table_) return nullptr;
  const int64_t id = id_[i].item<int64_t>();
  return id == kNullId ? nlohmann::json() : table_->condition_metadata(id);
}

namespace {
// The same row operation on the id and every tensor.
template <typename Op>
Condition map_rows(const torch::Tensor& id, const Condition::Tensors& tensors,
                   const std::shared_ptr<const ConditionTable>& table, Op op) {
  Condition::Tensors out;
  for (const auto& [name, t] : tensors) out.emplace(name, op(t));
  return Condition(op(id), std::move(out), table);
}
}  // namespace

Condition Condition::slice(int64_t begin, int64_t end) const {
  if (!defined()) return {};
  return map_rows(id_, tensors_, table_,
                  [&](const torch::Tensor& t) { return t.slice(0, begin, end); });
}

Condition Condition::index_select(const torch::Tensor& idx) const {
  if (!defined()) return {};
  return map_rows(id_, tensors_, table_, [&](const torch::Tensor& t) {
    return t.index_select(0, idx.to(t.device(), torch::kLong));
  });
}

Condition Condition::repeat_interleave(int64_t k) const {
  if (!defined() || k == 1) return *this;
  return map_rows(id_, tensors_, table_,
                  [&](const torch::Tensor& t) { return t.repeat_interleave(k, 0); });
}

Condition Condition::where(const torch::Tensor& mask, const Condition& other) const {
  if (!defined()) return {};
  TORCH_CHECK(other.defined() && (other.size() == size() || other.size() == 1),
              "Condition::where: the other condition has ", other.size(), " rows for a batch of ",
              size());
  TORCH_CHECK(mask.dim() == 1 && mask.size(0) == size(), "Condition::where: mask ", mask.sizes(),
              " for a batch of ", size());
  auto pick = [&](const torch::Tensor& mine, const torch::Tensor& theirs) {
    // mask [B] -> [B, 1, ...] to broadcast over each row's trailing dimensions.
    std::vector<int64_t> shape(static_cast<size_t>(mine.dim()), 1);
    shape[0] = size();
    return torch::where(mask.to(mine.device()).view(shape),
                        theirs.to(mine.device(), mine.scalar_type()), mine);
  };
  Tensors out;
  for (const auto& [name, t] : tensors_) out.emplace(name, pick(t, other.at(name)));
  return Condition(pick(id_, other.id()), std::move(out), table_);
}

Condition Condition::to(const torch::Device& device) const {
  if (!defined()) return {};
  return map_rows(id_, tensors_, table_, [&](const torch::Tensor& t) { return t.to(device); });
}

Condition Condition::cat(const std::vector<Condition>& parts) {
  if (parts.empty() || !parts.front().defined()) {
    for (const auto& p : parts)
      TORCH_CHECK(!p.defined(), "Condition::cat: empty and non-empty parts");
    return {};
  }
  std::vector<torch::Tensor> ids;
  std::map<std::string, std::vector<torch::Tensor>> columns;
  for (const auto& p : parts) {
    TORCH_CHECK(p.defined() && p.tensors().size() == parts.front().tensors().size(),
                "Condition::cat: the parts have different tensors");
    ids.push_back(p.id());
    for (const auto& [name, t] : p.tensors()) columns[name].push_back(t);
  }
  Tensors out;
  for (auto& [name, list] : columns) {
    TORCH_CHECK(list.size() == parts.size(), "Condition::cat: tensor '", name,
                "' is missing from a part");
    out.emplace(name, torch::cat(list, 0));
  }
  return Condition(torch::cat(ids, 0), std::move(out), parts.front().table());
}

Condition PromptEmbeddings::conditions(const torch::Tensor& ids_in,
                                       std::shared_ptr<const ConditionTable> table,
                                       const std::string& who) const {
  const auto ids = ids_in.to(torch::kCPU, torch::kLong);
  const int64_t K = count();
  TORCH_CHECK(ids.dim() == 1 && (ids.numel() == 0 || (ids.min().item<int64_t>() >= kNullId &&
                                                      ids.max().item<int64_t>() < K)),
              who, ": ids must be [n] in [-1, ", K, ")");
  const auto rows = torch::where(ids == kNullId, torch::full_like(ids, K), ids);  // [n]
  return Condition(
      ids, {{"context", context.index_select(0, rows)}, {"pooled", pooled.index_select(0, rows)}},
      std::move(table));
}

torch::Tensor labels_of(const Condition& cond, int64_t batch, const std::string& who) {
  TORCH_CHECK(cond.defined() && cond.has("label") && cond.size() == batch, who,
              ": a class-conditional model needs a condition with a label per sample, [", batch,
              "]");
  const auto& labels = cond.at("label");
  TORCH_CHECK(labels.dim() == 1, who, ": labels must be [", batch, "], got ", labels.sizes());
  return labels.to(torch::kLong);
}

}  // namespace ramflow
