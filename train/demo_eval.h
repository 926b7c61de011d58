/* demo_eval — `rlhf-train demo-eval`: measures a policy on the demo task
 * (engine/demo_task.h) against the hidden gold score, the reward model (the
 * proxy) and the SFT reference (KL). See demo_eval.c. */
#ifndef RLHF_DEMO_EVAL_H
#define RLHF_DEMO_EVAL_H

int rlhf_demo_eval_main(int argc, char **argv);

#endif
