#!/bin/sh
# The install step and the CMake package, as another project uses them: `cmake --install` of this
# build into a fresh prefix, then examples/custom_reward.cpp built as an outside project with
# find_package(ramflow) and ramflow::ramflow_core, and the installed tool run.
# The C++ standard comes with the package (its targets require the one they were built with).
# Usage: install_test.sh BUILD_DIR SOURCE_DIR PREFIX_PATH [CMAKE_ARGS...]: PREFIX_PATH is
# the build's own CMAKE_PREFIX_PATH (where its LibTorch is; may be empty), CMAKE_ARGS what else the
# outside project needs to find and link the same LibTorch (Torch_DIR, c10_LIBRARY, linker flags).
set -eu
build=$1 source=$2 prefix_path=$3
shift 3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
for f in include/ramflow/ramflow.h include/ramflow/core.h lib/libramflow.a lib/libramflow_core.a \
         lib/cmake/ramflow/ramflowConfig.cmake lib/cmake/ramflow/ramflowTargets.cmake bin/ramflow \
         share/ramflow/models/fashion_base.safetensors; do
  [ -e "$work/prefix/$f" ] || { echo "install_test: $f was not installed" >&2; exit 1; }
done
mkdir "$work/app"
cat > "$work/app/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.18)
project(outside CXX)
find_package(ramflow 0.1 REQUIRED)
add_executable(custom_reward "$source/examples/custom_reward.cpp")
target_link_libraries(custom_reward PRIVATE ramflow::ramflow_core)
CMAKE
cmake -S "$work/app" -B "$work/app/build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix${prefix_path:+;$prefix_path}" \
  "$@" > "$work/configure.log" 2>&1 ||
  { cat "$work/configure.log" >&2; exit 1; }
cmake --build "$work/app/build" > "$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; exit 1; }
[ -x "$work/app/build/custom_reward" ] || { echo "install_test: no custom_reward binary" >&2; exit 1; }
"$work/prefix/bin/ramflow" --version
echo "install_test: the installed package builds examples/custom_reward.cpp outside the tree"
