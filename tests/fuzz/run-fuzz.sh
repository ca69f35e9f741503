#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds the libFuzzer targets with clang (ASan + UBSan, coverage over the daemon core) in their
# own build directory and runs each over its seed corpus for a bounded time: any crash, leak or
# undefined behaviour fails. Usage: run-fuzz.sh SOURCE_DIR BUILD_DIR. ORPHAND_FUZZ_SECONDS sets
# the time per target (default 60). Reproduce a failure of fuzz_stream with:
#   unshare --pid --fork --mount-proc BUILD_DIR/tests/fuzz/fuzz_stream CRASH_FILE
set -eu
src=$1
build=$2
seconds=${ORPHAND_FUZZ_SECONDS:-60}
targets="fuzz_framer fuzz_request fuzz_stream"

probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char *, unsigned long) { return 0; }\n' \
    > "$probe/p.cpp"
if ! command -v clang++ >/dev/null ||
    ! clang++ -fsanitize=fuzzer,address,undefined "$probe/p.cpp" -o "$probe/p" 2>/dev/null; then
    echo "SKIP: clang++ with libFuzzer (clang, libclang-rt-14-dev) is not installed"
    exit 77
fi
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: fuzz_stream needs root for a private pid namespace"
    exit 77
fi

if [ ! -f "$build/build.ninja" ]; then
    # werror off: this build exists to find crashes, not to lint clang's warnings.
    CC=clang CXX=clang++ meson setup "$build" "$src" -Dfuzz=enabled \
        -Db_sanitize=address,undefined -Db_lundef=false -Dwerror=false \
        -Dcpp_args=-fsanitize=fuzzer-no-link -Dc_args=-fsanitize=fuzzer-no-link
fi
meson compile -C "$build" $targets

work=$(mktemp -d /tmp/orphand-fuzz-XXXXXX)
export ORPHAND_FUZZ_DIR="$work"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
status=0
failed=""
for target in $targets; do
    mkdir -p "$work/$target"
    cp "$src/tests/fuzz/corpus/$target/"* "$work/$target/"
    set -- "$build/tests/fuzz/$target" -max_total_time="$seconds" -max_len=1024 -timeout=20 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/$target-" \
        "$work/$target"
    if [ "$target" = fuzz_stream ]; then
        # It may signal processes: only its own, as pid 1 of a private pid namespace.
        set -- unshare --pid --fork --mount-proc "$@"
    fi
    echo "== $target for ${seconds}s"
    # Each target's output goes to a log of its own, shown in full as it runs; a failing
    # target's report is shown again at the end, where a log cut to its last lines keeps it.
    { rc=0; "$@" || rc=$?; echo "$rc" > "$work/$target.rc"; } 2>&1 | tee "$work/$target.log"
    if [ "$(cat "$work/$target.rc")" != 0 ]; then
        failed="$failed $target"
        status=1
    fi
done
for target in $failed; do
    echo "FAIL: $target; its log ends:"
    tail -n 60 "$work/$target.log"
    # The input that failed, in hex, to reproduce it from a log alone (at most 1024 bytes).
    for artifact in "$work/$target"-*; do
        [ -f "$artifact" ] || continue
        echo "$artifact:"
        od -An -tx1 -v "$artifact"
    done
done
[ "$status" = 0 ] && rm -rf "$work"
exit "$status"
