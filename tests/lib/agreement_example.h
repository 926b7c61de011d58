/* The hand-worked agreement example that tests/unit/test_agreement.c feeds
 * to server/agreement.c directly and tests/api/test_exports.c ranks through
 * the API: the same rankings give the same numbers both ways. */
#ifndef RLHF_AGREEMENT_EXAMPLE_H
#define RLHF_AGREEMENT_EXAMPLE_H

/*
 * Annotators P, Q, R. Comparison 1 has candidates a, b, c; comparison 2 has
 * d, e.
 *   c1: P a > b > c (midranks 1, 2, 3); Q b > a > c (2, 1, 3);
 *       R a = b > c (1.5, 1.5, 3)
 *   c2: P d > e (1, 2); Q e > d (2, 1); R skips.
 *
 * Krippendorff's alpha, ordinal. Units a, b, c (3 values each), d, e (2):
 * 13 pairable values. Coincidences (an ordered pair of a unit with m values
 * weighs 1/(m-1)): a and b each give every ordered pair of {1, 2, 1.5}
 * 1/2, together o(1,2) = o(1,1.5) = o(2,1.5) = 1 (and symmetric); c gives
 * o(3,3) = 6 * 1/2 = 3; d and e give o(1,2) += 2 → o(1,2) = o(2,1) = 3.
 * Marginals n_1 = 4, n_1.5 = 2, n_2 = 4, n_3 = 3, n = 13.
 * Ordinal distances (sum of n_g from c to k minus (n_c + n_k)/2, squared):
 *   (1,1.5): 6-3 = 3 → 9        (1,2): 10-4 = 6 → 36     (1,3): 13-3.5 → 90.25
 *   (1.5,2): 6-3 = 3 → 9        (1.5,3): 9-2.5 → 42.25   (2,3): 7-3.5 → 12.25
 * Observed sum o*d2 = 2*(3*36 + 1*9 + 1*9) = 252.
 * Expected sum n_c n_k d2 = 2*(8*9 + 16*36 + 12*90.25 + 8*9 + 6*42.25 + 12*12.25)
 *                        = 2*2203.5 = 4407.
 * alpha = 1 - 12 * 252 / 4407 = 1383 / 4407 = 0.31381892...
 *
 * Kendall's W. c1: m = 3, n = 3; rank sums a 4.5, b 4.5, c 9; mean 6;
 * S = 2.25 + 2.25 + 9 = 13.5; ties: R's {a,b} gives 2^3 - 2 = 6;
 * W = 12 * 13.5 / (9 * 24 - 3 * 6) = 162 / 198 = 9/11.
 * c2: m = 2, n = 2; rank sums 3, 3 → S = 0 → W = 0. Mean W = 9/22.
 *
 * Pair agreement (same order of a candidate pair; a tie agrees only with a
 * tie). c1: P-Q agree on (a,c), (b,c) but not (a,b): 2/3; P-R 2/3 (R ties
 * a,b); Q-R 2/3. c2: P-Q 0. P: (2/3 + 2/3 + 0)/3 = 4/9 over 3; Q: 4/9
 * over 3; R: 2/3 over 2 (ranked 1, skipped 1).
 *
 * Alpha per annotator (agreement.h): the coincidences whose first value is
 * theirs, against the project's expected disagreement D_e = 4407 / (13 *
 * 12) = 28.25. P: a gives (1,2) and (1,1.5) 1/2 each, b (2,1) and (2,1.5)
 * 1/2 each, c (3,3) twice 1/2, d (1,2) 1, e (2,1) 1: n_P = 5, sum o d2 =
 * 18 + 4.5 + 18 + 4.5 + 0 + 36 + 36 = 117, D_o = 23.4, alpha_P = 1 -
 * 23.4 / 28.25 = 97/565. Q mirrors P: 97/565. R: a (1.5,1), (1.5,2), b
 * the same, 1/2 each (d2 9), c 0: n_R = 3, sum 18, D_o = 6, alpha_R = 1 -
 * 6 / 28.25 = 89/113. Check: (117 + 117 + 18) / 13 = 252 / 13, the
 * project's D_o.
 */
#define HAND_ALPHA   (1383.0 / 4407.0)
#define HAND_ALPHA_P (97.0 / 565.0)
#define HAND_ALPHA_R (89.0 / 113.0)
#define HAND_W       (9.0 / 22.0)

#endif
