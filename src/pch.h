// Precompiled header shared by every target (see CMakeLists.txt).
#pragma once
#include <nlohmann/json.hpp>
#include <torch/torch.h>
