#!/bin/sh
# SPDX-License-Identifier: MIT
# Fails if any C or C++ source differs from what clang-format (the repository's .clang-format)
# makes of it.
set -eu
top=$1
cd "$top"
if git rev-parse --git-dir >/dev/null 2>&1; then
    files=$(git ls-files '*.c' '*.h' '*.cpp' '*.hpp')
else
    files=$(find . -path ./build -prune -o \( -name '*.c' -o -name '*.h' -o -name '*.cpp' \
        -o -name '*.hpp' \) -print)
fi
bad=0
for f in $files; do
    if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
        echo "not formatted: $f (run clang-format -i $f)"
        bad=1
    fi
done
[ $bad = 0 ] && echo "$(echo "$files" | wc -w) files formatted"
exit $bad
