#!/usr/bin/env python3
"""The selection study's summary over the per-seed lines of several logs.

build/selection-study keeps at most 16 seeds a run and summarises only its
own; this reads the "seed N RULE held-out accuracy by round: ...; ... PPO
gold G at KL K" lines of one or more of its logs (runs with the same
settings: the "selection study:" lines must match) and prints the same
table over every seed: per rule the mean±sd of the final held-out accuracy
and PPO gold, the gain over random paired by seed (mean±sd, 95% t interval,
seeds where the rule beat random), and the rounds 1.. models at or below
0.60 accuracy. A seed in two logs must give the same numbers.

    bench/selection_summary.py /tmp/sel_a.log /tmp/sel_b.log
"""

import math
import re
import sys

LINE = re.compile(
    r"^seed (\d+) (\S+)\s+held-out accuracy by round: ([-0-9. ]+); .*PPO gold (\S+) at KL"
)
T975 = [float("nan"), 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262,
        2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t975(df):
    """Table to 30, then the Cornish-Fisher expansion about z (within 0.001)."""
    if df < len(T975):
        return T975[df] if df >= 1 else float("nan")
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df * df)


def mean_sd(x):
    m = sum(x) / len(x)
    sd = math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1)) if len(x) > 1 else float("nan")
    return m, sd


def level(x):
    m, sd = mean_sd(x)
    return f" {m:.3f}±{sd:.3f} ({min(x):.3f}-{max(x):.3f}) |"


def gain(d):
    m, sd = mean_sd(d)
    half = t975(len(d) - 1) * sd / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    better = sum(v > 0 for v in d)
    return f" {m:+.3f}±{sd:.3f} | {m - half:+.3f}..{m + half:+.3f} | {better}/{len(d)} |"


def main(paths):
    runs = {}  # (seed, rule) -> (accuracies, gold)
    settings, rules = None, []
    for path in paths:
        for line in open(path, encoding="utf-8"):
            if line.startswith("selection study:"):
                if settings is not None and line != settings:
                    sys.exit(f"{path}: other settings than the first log:\n{line}{settings}")
                settings = line
            m = LINE.match(line)
            if not m:
                continue
            seed, rule = int(m.group(1)), m.group(2)
            val = ([float(v) for v in m.group(3).split()], float(m.group(4)))
            if (seed, rule) in runs and runs[(seed, rule)] != val:
                sys.exit(f"{path}: seed {seed} {rule} differs from an earlier log")
            runs[(seed, rule)] = val
            if rule not in rules:
                rules.append(rule)
    seeds = sorted({s for s, r in runs if all((s, q) in runs for q in rules)})
    if not seeds:
        sys.exit("no seed has every rule")
    ppo = not any(math.isnan(runs[(s, r)][1]) for s in seeds for r in rules)
    print(settings.rstrip() if settings else "")
    print(f"{len(seeds)} seeds ({', '.join(map(str, seeds))}); gains paired by seed, "
          f"95% interval mean ± t({len(seeds) - 1})·sd/√n\n")
    print("| rule | held-out RM accuracy, mean±sd (min-max) | gain vs random | 95% interval | "
          "better |" + (" PPO gold, mean±sd (min-max) | gold gain vs random | 95% interval | "
                        "better |" if ppo else ""))
    print("|---|---:|---:|---:|---:|" + ("---:|---:|---:|---:|" if ppo else ""))
    low = []
    for rule in rules:
        acc = [runs[(s, rule)][0][-1] for s in seeds]
        gold = [runs[(s, rule)][1] for s in seeds]
        row = f"| {rule} |" + level(acc)
        has_random = "random" in rules and rule != "random"
        row += gain([a - runs[(s, "random")][0][-1] for a, s in zip(acc, seeds)]) \
            if has_random else " - | - | - |"
        if ppo:
            row += level(gold)
            row += gain([g - runs[(s, "random")][1] for g, s in zip(gold, seeds)]) \
                if has_random else " - | - | - |"
        print(row)
        later = [a for s in seeds for a in runs[(s, rule)][0][1:]]
        low.append(f"{rule} {sum(a <= 0.60 for a in later)} of {len(later)} "
                   f"(lowest {min(later):.3f})")
    print("\nreward models of rounds 1.. at or below 0.60 held-out accuracy: " + "; ".join(low))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
