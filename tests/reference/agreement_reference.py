"""Independent reference for server/agreement.c: Krippendorff's alpha
(ordinal, midranks, missing data), Kendall's W with the tie correction and
per-annotator pair agreement, computed a different way (a values-by-units
table and the pairable-value formulas with numpy) on a few seeded random
projects plus the hand-worked example of tests/lib/agreement_example.h.

Writes tests/fixtures/agreement.json: run with /usr/bin/python3 from the
repository root.
"""
import json
import numpy as np


def midranks(groups):
    g = np.asarray(groups)
    return np.array([np.sum(g < x) + (np.sum(g == x) + 1) / 2.0 for x in g])


def alpha_ordinal(units):
    # units: list of lists of values (only pairable ones matter)
    units = [u for u in units if len(u) >= 2]
    values = sorted({v for u in units for v in u})
    if not values:
        return None
    idx = {v: i for i, v in enumerate(values)}
    V = len(values)
    o = np.zeros((V, V))
    for u in units:
        m = len(u)
        for a in range(m):
            for b in range(m):
                if a != b:
                    o[idx[u[a]], idx[u[b]]] += 1.0 / (m - 1)
    nc = o.sum(axis=1)
    n = nc.sum()
    cum = np.concatenate([[0.0], np.cumsum(nc)])
    d2 = np.zeros((V, V))
    for c in range(V):
        for k in range(V):
            lo, hi = min(c, k), max(c, k)
            d2[c, k] = (cum[hi + 1] - cum[lo] - (nc[c] + nc[k]) / 2.0) ** 2 if c != k else 0.0
    Do = (o * d2).sum() / n
    De = (np.outer(nc, nc) * d2).sum() / (n * (n - 1))
    if De == 0:
        return None
    return 1.0 - Do / De


def kendall_w(rank_matrix, groups_list):
    R = np.asarray(rank_matrix)  # m x n midranks
    m, n = R.shape
    if m < 2:
        return None
    S = ((R.sum(axis=0) - m * (n + 1) / 2.0) ** 2).sum()
    T = 0.0
    for groups in groups_list:
        _, counts = np.unique(groups, return_counts=True)
        T += float((counts ** 3 - counts).sum())
    denom = m * m * (n ** 3 - n) - m * T
    if denom <= 0:
        return None
    return 12.0 * S / denom


def pair_agreement(x, y):
    n = len(x)
    s = [np.sign(x[i] - x[j]) == np.sign(y[i] - y[j]) for i in range(n) for j in range(i + 1, n)]
    return float(np.mean(s))


def evaluate(comparisons):
    units, ws, ann = [], [], {}
    for c in comparisons:
        ranked = [r for r in c["rankings"] if not r.get("skip")]
        for r in c["rankings"]:
            a = ann.setdefault(r["annotator"], {"n_ranked": 0, "n_skipped": 0, "scores": []})
            a["n_skipped" if r.get("skip") else "n_ranked"] += 1
        mr = [midranks(r["groups"]) for r in ranked]
        for i in range(c["n"]):
            units.append([float(x[i]) for x in mr])
        if ranked:
            w = kendall_w(np.array(mr), [r["groups"] for r in ranked])
            if w is not None:
                ws.append(w)
        for j, r in enumerate(ranked):
            for k, s in enumerate(ranked):
                if j != k:
                    ann[r["annotator"]]["scores"].append(pair_agreement(mr[j], mr[k]))
    return {
        "alpha": alpha_ordinal(units),
        "kendall_w_mean": float(np.mean(ws)) if ws else None,
        "n_w": len(ws),
        "annotators": {
            str(k): {"n_ranked": v["n_ranked"], "n_skipped": v["n_skipped"],
                     "n_compared": len(v["scores"]),
                     "mean": float(np.mean(v["scores"])) if v["scores"] else None}
            for k, v in ann.items()},
    }


def hand_example():
    # P=1, Q=2, R=3; see tests/lib/agreement_example.h.
    return [
        {"n": 3, "rankings": [{"annotator": 1, "groups": [0, 1, 2]},
                              {"annotator": 2, "groups": [1, 0, 2]},
                              {"annotator": 3, "groups": [0, 0, 1]}]},
        {"n": 2, "rankings": [{"annotator": 1, "groups": [0, 1]},
                              {"annotator": 2, "groups": [1, 0]},
                              {"annotator": 3, "skip": True}]},
    ]


def random_project(rng, n_comparisons, n_annotators, k):
    comps = []
    for _ in range(n_comparisons):
        n = int(rng.integers(2, k + 1))
        truth = rng.normal(size=n)
        rankings = []
        for a in range(1, n_annotators + 1):
            u = rng.random()
            if u < 0.2:
                continue  # never saw it: missing
            if u < 0.3:
                rankings.append({"annotator": a, "skip": True})
                continue
            noisy = truth + rng.normal(scale=0.8, size=n)
            noisy = np.round(noisy * 2) / 2  # coarse: ties happen
            order = sorted(set(noisy.tolist()), reverse=True)
            rankings.append({"annotator": a, "groups": [order.index(v) for v in noisy.tolist()]})
        comps.append({"n": n, "rankings": rankings})
    return comps


def main():
    rng = np.random.default_rng(20261123)
    cases = [{"name": "hand", "comparisons": hand_example()}]
    for i, (nc, na, k) in enumerate([(6, 3, 3), (20, 5, 4), (40, 4, 9)]):
        cases.append({"name": f"random{i}", "comparisons": random_project(rng, nc, na, k)})
    for c in cases:
        c["expected"] = evaluate(c["comparisons"])
    with open("tests/fixtures/agreement.json", "w") as f:
        json.dump({"generator": "tests/reference/agreement_reference.py", "cases": cases}, f,
                  indent=1)
        f.write("\n")
    for c in cases:
        print(c["name"], c["expected"]["alpha"], c["expected"]["kendall_w_mean"])


if __name__ == "__main__":
    main()
