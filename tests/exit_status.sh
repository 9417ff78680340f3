#!/bin/sh
# Runs a command, prints its output (stderr merged) and then "exit=N", so a ctest regex can check both.
"$@" 2>&1
echo "exit=$?"
