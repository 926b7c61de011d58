#include "worker_launch.h"

#include <signal.h>
#include <stdio.h>
#include <unistd.h>

bool worker_launch_mpi_built(void) {
#ifdef RLHF_MPI
    return true;
#else
    return false;
#endif
}

int worker_launch_check(const rlhfd_config *cfg, int64_t ranks, char *err, size_t errlen) {
    if (ranks < 1 || ranks > JOBS_DB_MAX_RANKS) {
        snprintf(err, errlen, "ranks must be an integer in [1, %d]", JOBS_DB_MAX_RANKS);
        return -1;
    }
    if (ranks == 1)
        return 0;
    if (!worker_launch_mpi_built()) {
        snprintf(err, errlen,
                 "ranks %lld needs data-parallel training, but rlhf-train was built without MPI "
                 "(build with `make deps && make MPI=1`)",
                 (long long)ranks);
        return -1;
    }
    if (cfg->hostfile[0] == '\0') {
        snprintf(err, errlen,
                 "ranks %lld needs rlhfd's hostfile setting (--hostfile FILE: the machines "
                 "mpirun may use, this one first, e.g. a line `localhost slots=%lld`)",
                 (long long)ranks, (long long)ranks);
        return -1;
    }
    if (access(cfg->hostfile, R_OK) != 0) {
        snprintf(err, errlen, "ranks %lld: rlhfd's hostfile %.300s cannot be read",
                 (long long)ranks, cfg->hostfile);
        return -1;
    }
    return 0;
}

int worker_launch_argv(const rlhfd_config *cfg, int64_t ranks, const char *job_id_text,
                       char np_text[24], char **argv) {
    int n = 0;
    if (ranks > 1) {
        snprintf(np_text, 24, "%lld", (long long)ranks);
        argv[n++] = (char *)cfg->mpirun;
        argv[n++] = "-np";
        argv[n++] = np_text;
        argv[n++] = "--hostfile";
        argv[n++] = (char *)cfg->hostfile;
        if (geteuid() == 0) /* mpirun refuses root otherwise */
            argv[n++] = "--allow-run-as-root";
        /* the ranks on other machines get rlhfd's settings for workers too */
        argv[n++] = "-x";
        argv[n++] = "OPENBLAS_NUM_THREADS";
        argv[n++] = "-x";
        argv[n++] = "RLHF_LEASE_MS";
        argv[n++] = "-x";
        argv[n++] = "RLHF_DATA_DIR";
    }
    argv[n++] = (char *)cfg->train_bin;
    argv[n++] = "--db";
    argv[n++] = (char *)cfg->db_path;
    argv[n++] = "--job";
    argv[n++] = (char *)job_id_text;
    argv[n] = NULL;
    return ranks > 1 ? SIGUSR2 : SIGTERM;
}
