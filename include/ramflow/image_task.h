#pragma once
// Labelled image datasets in IDX files (MNIST's layout) as conditional tasks: every sample is an
// image x0 [C, H, W] with values in [-1, 1] (x0 = u / 127.5 - 1 for a byte u), its condition its
// class label.
//   fashion  Fashion-MNIST, 10 classes of 28x28 grey images, 60000 training and 10000 test images,
//            from Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) or
//            params.data_dir.
// The directory holds train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
// t10k-labels-idx1-ubyte, each plain or with ".gz". All four are read and checked when the task is
// built, before any compute: a missing or malformed file is an InputError naming it.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ramflow/task.h"

namespace ramflow {

struct ImageDatasetInfo {
  std::string name;                      // the task name
  std::string default_dir;               // where the dataset package puts the files
  std::string package;                   // what installs them (for the error message)
  std::vector<std::string> class_names;  // one per class
};

/// The fashion task's description (class names: T-shirt/top, Trouser, ..., Ankle boot).
const ImageDatasetInfo& fashion_mnist_info();

/// Builds an IDX image task; params: null or {"data_dir": DIR}.
TaskPtr make_image_task(const ImageDatasetInfo& info, const nlohmann::json& params);

/// The image tasks' preset (TaskInfo::preset): pretraining with EMA weights and label dropout, and
/// the post-training demo's settings.
nlohmann::json image_task_preset();

/// The default velocity field of an image task: a class-conditional U-Net (unet.h) for [C, H, W]
/// images.
nlohmann::json default_image_model(int64_t channels, int64_t size, int64_t num_classes);

}  // namespace ramflow
