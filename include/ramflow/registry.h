#pragma once
// Registry<T>: the one place a component kind's user-visible names map to implementations.
// Entries are added by explicit `register_builtin_<kind>()` functions (one line per component),
// never by static self-registering objects, which a static link silently drops.
#include <map>
#include <string>
#include <vector>

#include "ramflow/strings.h"

#include "ramflow/errors.h"

namespace ramflow {

template <class T>
class Registry {
 public:
  explicit Registry(std::string kind) : kind_(std::move(kind)) {}

  /// Adds `name`; a duplicate name is a programming error and throws.
  void add(const std::string& name, T entry, std::string help = "") {
    if (entries_.count(name)) throw Error(kind_ + " '" + name + "' is registered twice");
    entries_.emplace(name, Entry{std::move(entry), std::move(help)});
  }

  /// The entry for `name`; an unknown name throws ConfigError listing the known ones.
  const T& get(const std::string& name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      throw ConfigError("unknown " + kind_ + " '" + name + "' (known: " + joined_names() + ")");
    }
    return it->second.entry;
  }

  bool contains(const std::string& name) const { return entries_.count(name) > 0; }
  const std::string& help(const std::string& name) const { return entries_.at(name).help; }
  const std::string& kind() const { return kind_; }

  /// Every registered name, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& kv : entries_) out.push_back(kv.first);
    return out;
  }

  std::string joined_names() const { return join(names()); }

 private:
  struct Entry {
    T entry;
    std::string help;
  };
  std::string kind_;
  std::map<std::string, Entry> entries_;
};

}  // namespace ramflow
