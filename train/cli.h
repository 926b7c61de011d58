/* cli — the rlhf-train command line.
 *
 *   rlhf-train TYPE [--config FILE.json] [--threads N] [--checkpoint-dir DIR]
 *                   [--quiet] [--<hyperparameter> VALUE]...
 *   rlhf-train COMMAND [ARGS]     (describe, demo-data, tokenize, ...)
 *
 * `--help` (or -h) anywhere after a job type or command prints its usage
 * (a job type's with its hyperparameters) and exits 0; `rlhf-train --help`
 * lists the job types and commands.
 *
 * Exit codes: 0 done (trained, solved, or stopped by a signal after a clean
 * checkpoint), 1 training failed, 2 bad command line or configuration.
 */
#ifndef RLHF_CLI_H
#define RLHF_CLI_H

#include <stdio.h>

int rlhf_train_main(int argc, char **argv);

/* Prints `usage: rlhf-train NAME ARGS` of command name to out. */
void rlhf_train_command_usage(FILE *out, const char *name);

#endif
