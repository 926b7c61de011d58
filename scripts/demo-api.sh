#!/usr/bin/env bash
# The RLHF demo through rlhfd's API (make demo-api): everything a user of
# the service would do, with rlhfctl.
#
#   1. rlhfd on a fresh database; admin, annotator and viewer tokens
#   2. the demo task's datasets uploaded (engine/demo_task.h): SFT examples
#      and the prompts PPO trains on
#   3. an sft job; its final checkpoint downloaded
#   4. the simulated annotator (rlhf-train demo-rankings: K = 4 samples of
#      the SFT policy ranked by the hidden gold score with Plackett-Luce
#      noise) posts its rankings through the API, each as a comparison (by
#      the admin) and a ranking (by the annotator token)
#   5. a reward job on the project's rankings; then DEMO_UNRANKED more
#      comparisons (4 samples of the SFT model each, sampled by rlhfd) are
#      posted to the project and left unranked, for a person to rank on the
#      annotator page (after the reward job was created: the rankings it
#      trains on are those made before, so the demo's result does not
#      depend on them); then a ppo job against the reward model
#   6. a sample from the SFT and the PPO model; the dashboard URL and tokens
#   7. a short online loop (rlhfctl loops create examples/loops/demo.json,
#      docs/online_loop.md): DEMO_LOOP_ROUNDS rounds of sample -> choose
#      comparisons by uncertainty -> the simulated annotator ranks them
#      through the API (rlhfctl annotate --simulate demo) -> reward model
#      (warm start, from step 5's) -> ppo from the last policy, KL to the SFT
#      model; its per-round signals printed (DEMO_LOOP_ROUNDS=0 skips it)
#
# rlhfd keeps running afterwards so the dashboard can be opened; the last
# lines say how to stop it. DEMO_STOP=1 stops it at the end instead.
# Settings: BUILD (default build), DEMO_LISTEN (default 127.0.0.1:8080),
# DEMO_RANKINGS (default 800), DEMO_SFT_STEPS (default 800), DEMO_UNRANKED
# (default 20).
#
# Why a shell script: each step is a command a user would type; the
# pipeline's sizes are those of `make demo` (Makefile), so the two runs can
# be compared.
set -euo pipefail

BUILD=${BUILD:-build}
OUT=$BUILD/demo-api
LISTEN=${DEMO_LISTEN:-127.0.0.1:8080}
N_RANKINGS=${DEMO_RANKINGS:-800}
SFT_STEPS=${DEMO_SFT_STEPS:-800}
N_UNRANKED=${DEMO_UNRANKED:-20}
LOOP_ROUNDS=${DEMO_LOOP_ROUNDS:-3}
for tool in jq "$BUILD/rlhfd" "$BUILD/rlhf-train" "$BUILD/rlhfctl"; do
    command -v "$tool" > /dev/null || { echo "demo-api: $tool is missing (make all; apt-get install jq)" >&2; exit 2; }
done

rm -rf "$OUT" && mkdir -p "$OUT"
DB=$OUT/rlhfd.db
ADMIN=$("$BUILD/rlhfd" --db "$DB" --create-token admin --role admin)
"$BUILD/rlhfd" --listen "$LISTEN" --db "$DB" --workers 1 > "$OUT/rlhfd.out" 2> "$OUT/rlhfd.log" &
RLHFD=$!
stop() { kill "$RLHFD" 2> /dev/null && wait "$RLHFD" 2> /dev/null || true; }
trap 'echo "demo-api: failed; rlhfd log in $OUT/rlhfd.log" >&2; stop' ERR
for _ in $(seq 100); do
    URL=$(sed -n 's/^rlhfd: listening on \(http:[^ ]*\).*/\1/p' "$OUT/rlhfd.out")
    [ -n "$URL" ] && break
    kill -0 "$RLHFD" 2> /dev/null || { echo "demo-api: rlhfd did not start:" >&2; cat "$OUT/rlhfd.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$URL" ] || { echo "demo-api: rlhfd printed no address" >&2; stop; exit 1; }
ctl() { "$BUILD/rlhfctl" --url "$URL" --token "$ADMIN" "$@"; }
echo "== rlhfd at $URL (pid $RLHFD, database $DB)"

ANNOTATOR_JSON=$(ctl --json tokens create annotator --role annotator)
ANNOTATOR=$(jq -r .token <<< "$ANNOTATOR_JSON")
ANNOTATOR_ID=$(jq .id <<< "$ANNOTATOR_JSON")
VIEWER_JSON=$(ctl --json tokens create viewer --role viewer)
VIEWER=$(jq -r .token <<< "$VIEWER_JSON")
VIEWER_ID=$(jq .id <<< "$VIEWER_JSON")
cat <<EOF
   watch it live: open $URL/ (dashboard) and log in with a token
   admin     $ADMIN
   annotator $ANNOTATOR   (rank comparisons yourself on the annotator page once the
                         demo has posted $N_UNRANKED unranked ones, after its reward job starts)
   viewer    $VIEWER
EOF

echo "== datasets"
"$BUILD/rlhf-train" demo-data --out "$OUT/sft.jsonl" --n 3000
jq -c '{prompt}' "$OUT/sft.jsonl" > "$OUT/prompts.jsonl"
SFT_DATA=$(ctl --json datasets create demo-sft --format sft --file "$OUT/sft.jsonl" | jq .id)
PROMPTS=$(ctl --json datasets create demo-prompts --format prompts --file "$OUT/prompts.jsonl" | jq .id)

echo "== sft job"
SFT_JOB=$(ctl --json jobs submit sft --training-file "$SFT_DATA" --set n_layer=2 --set d_model=64 \
    --set context=96 --set max_steps="$SFT_STEPS" --set learning_rate=3e-3 --set sample_interval=400 \
    --set sample_temperature=0.8 --set eval_interval=200 --set checkpoint_interval=200 | jq .id)
ctl jobs watch "$SFT_JOB"
SFT_CKPT=$(ctl --json jobs show "$SFT_JOB" | jq .fine_tuned_model)
ctl checkpoints download "$SFT_CKPT" -o "$OUT/sft.safetensors" > /dev/null

echo "== the simulated annotator ranks $N_RANKINGS sets of 4 SFT samples, through the API"
"$BUILD/rlhf-train" demo-rankings --policy "$OUT/sft.safetensors" --out "$OUT/rankings.jsonl" \
    --n "$N_RANKINGS" --k 4
PROJECT=$(ctl --json projects create demo-rankings --k 4 | jq .id)
# annotator and viewer tokens see only the projects they are granted
ctl projects grant "$PROJECT" "$ANNOTATOR_ID" > /dev/null
ctl projects grant "$PROJECT" "$VIEWER_ID" > /dev/null
# One line per ranking: the prompt, the K = 4 responses and their ranks
# (tab-separated: rankings whose samples hold a tab, newline or backslash
# are left out, and so are those with an empty sample, since `read` would
# fold its empty field away), so each ranking costs three
# processes: the comparison (admin), its candidate ids, the ranking
# (annotator).
n=0
while IFS=$'\t' read -r prompt r0 r1 r2 r3 ranks; do
    ids=($(ctl --json comparisons add "$PROJECT" --prompt "$prompt" --candidate "$r0" \
        --candidate "$r1" --candidate "$r2" --candidate "$r3" | jq -r '.id, .candidates[].id'))
    read -r -a rank <<< "$ranks"
    groups=() # best first: the candidate ids of each rank, ties joined by '='
    for r in 0 1 2 3; do
        group=""
        for j in 0 1 2 3; do
            [ "${rank[j]}" = "$r" ] && group+="${group:+=}${ids[j + 1]}"
        done
        [ -n "$group" ] && groups+=("$group")
    done
    "$BUILD/rlhfctl" --url "$URL" --token "$ANNOTATOR" rank "${ids[0]}" "${groups[@]}" > /dev/null
    n=$((n + 1))
    [ $((n % 100)) -eq 0 ] && echo "   $n rankings posted"
done < <(jq -r 'select(all(.responses[]; length > 0 and (test("[\\t\\n\\r\\\\]") | not)))
    | [.prompt] + .responses + [.ranks | map(tostring) | join(" ")] | @tsv' "$OUT/rankings.jsonl")
echo "   $n rankings posted ($(($(wc -l < "$OUT/rankings.jsonl") - n)) left out: one with an empty" \
    "sample, a tab, newline or backslash would not survive the TSV)"
ctl projects show "$PROJECT"

echo "== reward job on the project's rankings"
RM_JOB=$(ctl --json jobs submit reward --training-project "$PROJECT" --model "job:$SFT_JOB" \
    --set epochs=3 --set learning_rate=1e-3 --set eval_interval=100 | jq .id)

echo "== $N_UNRANKED comparisons of SFT samples left unranked, for you to rank"
# The reward job above counts only rankings made before it was created, so
# ranking these does not change what the demo measures. One whose sampling
# fails (e.g. no generation slot in time) is left out, not fatal.
n_unranked=0
while IFS= read -r prompt; do
    if ctl comparisons add "$PROJECT" --prompt "$prompt" --sample-from "$SFT_CKPT" --n 4 \
        --max-tokens 56 --temperature 0.8 --seed $((n_unranked + 1)) > /dev/null 2>> "$OUT/unranked.log"; then
        n_unranked=$((n_unranked + 1))
    fi
done < <(jq -r .prompt "$OUT/prompts.jsonl" | head -n "$N_UNRANKED")
echo "   $n_unranked posted to project $PROJECT (demo-rankings)"
# What the server says waits for a person: the newest comparisons with no ranking.
waiting() {
    ctl --json comparisons list "$PROJECT" --limit "$((n_unranked > 0 ? n_unranked : 1))" \
        | jq '[.data[] | select(.n_rankings == 0)] | length'
}
ctl jobs watch "$RM_JOB"

echo "== ppo job"
PPO_JOB=$(ctl --json jobs submit ppo --training-file "$PROMPTS" --model "job:$SFT_JOB" \
    --reward-model "job:$RM_JOB" --set total_updates=60 --set batch_size=16 --set mini_batch_size=4 \
    --set response_length=56 --set learning_rate=1e-4 --set kl_coef=0.1 --set sample_interval=10 \
    --set checkpoint_interval=10 | jq .id)
ctl jobs watch "$PPO_JOB"
PPO_CKPT=$(ctl --json jobs show "$PPO_JOB" | jq .fine_tuned_model)

echo "== samples (temperature 0.7, seed 1)"
for prompt in "Describe the river." "Describe the city."; do
    echo "-- $prompt"
    echo "   sft: $(ctl checkpoints generate "$SFT_CKPT" --prompt "$prompt" --temperature 0.7 --seed 1)"
    echo "   ppo: $(ctl checkpoints generate "$PPO_CKPT" --prompt "$prompt" --temperature 0.7 --seed 1)"
done
ctl jobs metrics "$PPO_JOB" --names objective/scores,objective/kl --limit 100 | tail -n 3

echo "== the hidden gold score (engine/demo_task.h) of 400 samples each, SFT vs PPO"
RM_CKPT=$(ctl --json jobs show "$RM_JOB" | jq .fine_tuned_model)
ctl checkpoints download "$PPO_CKPT" -o "$OUT/ppo.safetensors" > /dev/null
ctl checkpoints download "$RM_CKPT" -o "$OUT/reward.safetensors" > /dev/null
for m in sft ppo; do
    "$BUILD/rlhf-train" demo-eval --policy "$OUT/$m.safetensors" --ref "$OUT/sft.safetensors" \
        --reward-model "$OUT/reward.safetensors" --n 400 --max-tokens 56 --seed 2001 \
        | jq -c --arg m "$m" '{model: $m} + .'
done

if [ "$LOOP_ROUNDS" -gt 0 ]; then
    echo "== an online loop: $LOOP_ROUNDS rounds of sample -> rank (simulated, via the API) -> reward -> ppo"
    LOOP_PROJECT=$(ctl --json projects create demo-loop --k 2 | jq .id)
    ctl projects grant "$LOOP_PROJECT" "$ANNOTATOR_ID" > /dev/null
    # examples/loops/demo.json: why these sizes, in bench/RESULTS.md ("The online
    # loop on the demo task"); it starts from the reward model of step 5
    LOOP=$(ctl --json loops create "$(dirname "$0")/../examples/loops/demo.json" --name demo --model "job:$SFT_JOB" \
        --reward-model "job:$RM_JOB" --project "$LOOP_PROJECT" --prompts "$PROMPTS" \
        --set rounds="$LOOP_ROUNDS" | jq .id)
    echo "   loop $LOOP on project $LOOP_PROJECT (rlhfctl loops show $LOOP)"
    while :; do
        read -r status phase < <(ctl --json loops show "$LOOP" | jq -r '"\(.status) \(.phase)"')
        [ "$status" = running ] || break
        if [ "$phase" = annotating ]; then
            "$BUILD/rlhfctl" --url "$URL" --token "$ANNOTATOR" annotate "$LOOP_PROJECT" --simulate demo \
                --noise 0.5 > /dev/null
        fi
        sleep 0.5
    done
    ctl loops show "$LOOP" | sed 's/^/   /'
    echo "   (gold: the demo task's hidden score of the new policy on 16 prompts, 4 samples each;" \
        "SAMPLE_GOLD: of the round's samples, round 1's from the SFT model)"
fi

trap - ERR
cat <<EOF

== done
dashboard:  $URL/
tokens:     admin     $ADMIN
            annotator $ANNOTATOR
            viewer    $VIEWER
jobs:       sft $SFT_JOB, reward $RM_JOB, ppo $PPO_JOB (rlhfctl --url $URL --token TOKEN jobs list)

EOF
N_WAITING=$(waiting)
if [ "$N_WAITING" -gt 0 ]; then
    cat <<EOF
Your turn: $N_WAITING comparisons of project $PROJECT (demo-rankings) wait unranked.
Open $URL/, log in with the annotator token and rank them on the annotator page, or:
  rlhfctl --url $URL --token $ANNOTATOR comparisons next $PROJECT    (then: rlhfctl ... rank)
The $n rankings above were the simulated annotator's; yours join the project for
the next reward job (the demo's own reward job did not wait for them).
EOF
else
    echo "No comparison waits for you: posting them failed (see $OUT/unranked.log)."
fi
if [ "${DEMO_STOP:-0}" = 1 ]; then
    stop
    echo "rlhfd stopped; its database is $DB"
else
    echo "rlhfd keeps running (pid $RLHFD); stop it with: kill $RLHFD"
fi
