/* ranking_limits — the largest K: how many responses one ranking (a
 * comparison of an annotation project, a K-wise row of a preference
 * dataset) may order. One value for every layer: the engine's ranking
 * (reward.h), rlhfd's project routes and agreement, the dataset line
 * parser (common/dataset_format.h takes it from its callers, since common/
 * sees no engine header), and the schema (009_dataset_rankings.sql; a test
 * checks the database refuses K + 1). 9 is what the API has accepted
 * since the first release; the first schema's CHECK allowed 16. */
#ifndef RLHF_RANKING_LIMITS_H
#define RLHF_RANKING_LIMITS_H

#define RANKING_MAX_K 9

#endif
