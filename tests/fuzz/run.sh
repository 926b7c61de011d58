#!/bin/sh
# Builds a libFuzzer target and runs it over its committed corpus.
#
#   tests/fuzz/run.sh [TARGET] [SECONDS]     defaults: safetensors 30
#                                            (targets: safetensors, requests, hf_tokenizer)
#
# TARGET is tests/fuzz/fuzz_TARGET.c, built with clang into
# build/fuzz-TARGET with ASan + UBSan. New inputs go to build/fuzz-corpus/
# TARGET (the committed tests/fuzz/corpus/TARGET is only read); a crash
# leaves its input in build/fuzz-artifacts/ and makes the script fail.
# Needs clang and its fuzzer runtime (Debian: clang libclang-rt-14-dev).
set -eu

target=${1:-safetensors}
seconds=${2:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

extra=
case $target in
    safetensors) sources="tests/fuzz/fuzz_safetensors.c engine/safetensors.c"; libs=-ljansson ;;
    hf_tokenizer)
        sources="tests/fuzz/fuzz_hf_tokenizer.c engine/hf_tokenizer.c engine/regex_lite.c
            engine/unicode_nfc.c engine/unicode_data.c engine/unicode_tables.c"
        libs=-ljansson ;;
    requests)
        # rlhfd's request path with stubbed libmicrohttpd and scheduler; the
        # engine (job validation) is linked as built by make, uninstrumented.
        # server/mhd_errors.c wraps libmicrohttpd's response functions, which
        # the harness defines itself as stubs.
        make -s build/libengine.a build/common/schema_sql.c build/server/openapi_json.c
        sources="tests/fuzz/fuzz_requests.c build/common/schema_sql.c build/server/openapi_json.c
            $(ls common/*.c server/*.c |
            grep -v -e server/main.c -e server/scheduler.c -e server/mhd_errors.c |
            tr '\n' ' ')"
        libs="build/libengine.a -lopenblas -ljansson -lsqlite3 -lm -lpthread"
        extra="-Iserver -Icommon -D_GNU_SOURCE" ;;
    *) echo "run.sh: unknown fuzz target '$target'" >&2; exit 2 ;;
esac

CLANG=${CLANG:-clang}
mkdir -p build "build/fuzz-corpus/$target" build/fuzz-artifacts
# shellcheck disable=SC2086 # word splitting of $sources is intended
"$CLANG" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Iengine \
    $extra $sources $libs -o "build/fuzz-$target"

dict=
[ -f "tests/fuzz/$target.dict" ] && dict="-dict=tests/fuzz/$target.dict"
# shellcheck disable=SC2086 # $dict is empty or one word
exec "build/fuzz-$target" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix=build/fuzz-artifacts/ $dict \
    "build/fuzz-corpus/$target" "tests/fuzz/corpus/$target"
