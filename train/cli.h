/* cli — the rlhf-train command line.
 *
 *   rlhf-train describe [TYPE] [--markdown]
 *   rlhf-train TYPE [--config FILE.json] [--threads N] [--checkpoint-dir DIR]
 *                   [--quiet] [--<hyperparameter> VALUE]...
 *
 * Exit codes: 0 done (trained, solved, or stopped by a signal after a clean
 * checkpoint), 1 training failed, 2 bad command line or configuration.
 */
#ifndef RLHF_CLI_H
#define RLHF_CLI_H

int rlhf_train_main(int argc, char **argv);

#endif
