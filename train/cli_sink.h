/* cli_sink — the train_sink of the command line: one JSON object per line
 * on stdout (metrics and events), a human progress line on stderr, and
 * checkpoints written atomically into a directory. */
#ifndef RLHF_CLI_SINK_H
#define RLHF_CLI_SINK_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "jobs.h"
#include "sink.h"

typedef struct cli_sink {
    const job_type *type;
    FILE *json_out;             /* stdout */
    FILE *human_out;            /* stderr, or NULL when --quiet */
    const char *checkpoint_dir; /* NULL: checkpoints are dropped */
    volatile sig_atomic_t *stop_flag;
    char last_checkpoint[4096];
    double last_human_s;    /* when the last progress line was printed */
    char human_line[512];   /* the latest progress line */
    int human_line_pending; /* not printed yet */
} cli_sink;

train_sink cli_sink_make(cli_sink *cs);
/* Prints the latest progress line if the rate limit held it back. */
void cli_sink_finish(cli_sink *cs);

/* Prints a number the way the JSON lines do: integers without a fraction,
 * others with 10 significant digits, non-finite values as null. */
void cli_print_number(FILE *out, double v);

#endif
