#pragma once
// A batch of conditions: what each sample was asked for. It travels with every sample through
// rollout, reward, loss and evaluation.
//   id      [B] int64: which condition (a class, a prompt), an index into the task's table of
//   conditions;
//           kNullId (-1) marks the null (negative) condition of classifier-free guidance.
//   tensors named tensors whose first dimension is B: "label" [B] int64 for a class-conditional
//   model;
//           "context" [B, L, D] (prompt embeddings) and "pooled" [B, P] for a text-conditioned one.
//   table   what the ids stand for (their text and metadata, for rewards, reports and grids);
//   shared.
// An unconditional batch is the empty Condition (no id, no tensors). The task builds conditions
// (task.h); models read the tensors they need by name; rewards may read the text and metadata.
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

namespace ramflow {

/// The id of the null condition: a model given it predicts the unconditional velocity.
inline constexpr int64_t kNullId = -1;

/// What the ids of a set of conditions stand for. A task is one (task.h).
class ConditionTable {
 public:
  virtual ~ConditionTable() = default;
  /// The number of distinct conditions (ids 0 .. count - 1); 0 for an unconditional task.
  virtual int64_t condition_count() const { return 0; }
  /// A person's name for condition `id`: a class name, a prompt. "" for kNullId.
  virtual std::string condition_text(int64_t id) const;
  /// Optional facts about condition `id` for rewards (GenEval's objects, OCR's target); null if
  /// none.
  virtual nlohmann::json condition_metadata(int64_t id) const { return nullptr; }
};

/// A table whose condition i is texts[i] (prompts or words scored outside a task: a reward's
/// tests, a benchmark).
class TextTable : public ConditionTable {
 public:
  explicit TextTable(std::vector<std::string> texts) : texts_(std::move(texts)) {}
  int64_t condition_count() const override { return static_cast<int64_t>(texts_.size()); }
  std::string condition_text(int64_t id) const override {
    return id >= 0 && id < condition_count() ? texts_[static_cast<size_t>(id)] : "";
  }

 private:
  std::vector<std::string> texts_;
};

class Condition {
 public:
  using Tensors = std::map<std::string, torch::Tensor>;
  /// The empty condition of an unconditional batch.
  Condition() = default;
  /// id [B] int64; every tensor [B, ...]. Throws c10::Error naming a tensor whose rows differ from
  /// id's.
  Condition(torch::Tensor id, Tensors tensors,
            std::shared_ptr<const ConditionTable> table = nullptr);
  /// A class-conditional batch: id = label = labels ([B] int64; kNullId for the null condition).
  static Condition classes(const torch::Tensor& labels,
                           std::shared_ptr<const ConditionTable> table = nullptr);

  bool defined() const { return id_.defined(); }
  /// B, the batch size (0 for the empty condition).
  int64_t size() const { return defined() ? id_.size(0) : 0; }
  const torch::Tensor& id() const { return id_; }
  bool has(const std::string& name) const { return tensors_.count(name) > 0; }
  /// The named tensor; c10::Error naming the ones the batch has if it has no such tensor.
  const torch::Tensor& at(const std::string& name) const;
  const Tensors& tensors() const { return tensors_; }
  const std::shared_ptr<const ConditionTable>& table() const { return table_; }
  /// The text of sample i's condition ("" without a table or for the null condition).
  std::string text(int64_t i) const;
  /// The metadata of sample i's condition (null without a table).
  nlohmann::json metadata(int64_t i) const;

  // --- batch operations: each applies to the id and every tensor along dimension 0 ---------------
  /// Rows [begin, end).
  Condition slice(int64_t begin, int64_t end) const;
  /// Rows idx ([n] int64).
  Condition index_select(const torch::Tensor& idx) const;
  /// Each row k times in a row: [B] -> [B k] (row b on rows b k .. b k + k - 1), as a group shares
  /// one.
  Condition repeat_interleave(int64_t k) const;
  /// The rows of `other` (of size B, or of size 1: broadcast) where mask [B] (bool) is true.
  Condition where(const torch::Tensor& mask, const Condition& other) const;
  Condition to(const torch::Device& device) const;
  /// The batches one after the other; all empty, or all with the same tensor names.
  static Condition cat(const std::vector<Condition>& parts);

 private:
  torch::Tensor id_;
  Tensors tensors_;
  std::shared_ptr<const ConditionTable> table_;
};

/// The embeddings of a text-conditioned task's prompts, by id: rows 0..K-1 of context [K + 1, L, C]
/// and pooled [K + 1, P] are the K prompts', row K the empty prompt's (the null condition of
/// guidance).
struct PromptEmbeddings {
  torch::Tensor context, pooled;
  /// K, the number of prompts.
  int64_t count() const { return context.size(0) - 1; }
  /// ids [n] (kNullId allowed) -> a batch of "context" and "pooled" rows with `table`; c10::Error
  /// naming `who` for an id outside [-1, K).
  Condition conditions(const torch::Tensor& ids, std::shared_ptr<const ConditionTable> table,
                       const std::string& who) const;
};

/// The class labels a class-conditional model reads: cond's "label" tensor, checked to be [batch]
/// (int64). `who` names the model in the error.
torch::Tensor labels_of(const Condition& cond, int64_t batch, const std::string& who);

}  // namespace ramflow
