#!/bin/sh
# SPDX-License-Identifier: MIT
# Fails if groff reports any warning for a man page.
set -eu
out=$("$1" -man -ww -z "$2" 2>&1)
if [ -n "$out" ]; then
    printf '%s\n' "$out"
    exit 1
fi
echo "clean: $2"
