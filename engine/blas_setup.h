/* blas_setup — make sure OpenBLAS runs its fast kernels on this CPU.
 *
 * Debian 12's OpenBLAS (0.3.21, DYNAMIC_ARCH) picks kernels by CPU model.
 * On CPUs newer than it knows (e.g. the Xeons our machines have, family 6
 * model 207) it falls back to "Prescott", its SSE3 kernels: sgemm then runs at
 * ~18 GFLOP/s per core instead of ~150 with the AVX-512 "SkylakeX" kernels
 * (bench/gemm_ceiling.c; bench/RESULTS.md). OpenBLAS reads OPENBLAS_CORETYPE
 * only when it loads, before main(), so the fix is to set it and re-execute
 * the program once. We only do so when the user has not set it, the library
 * reports Prescott, and the CPU has the instructions the chosen kernel needs
 * (AVX-512 F/BW/DQ/VL → SkylakeX; AVX2 + FMA → Haswell). The test suite
 * runs under the same choice, so every numeric test checks the kernels that
 * production uses. RLHF_BLAS_AUTOCORE=0 turns it off.
 */
#ifndef RLHF_BLAS_SETUP_H
#define RLHF_BLAS_SETUP_H

/* Call first thing in main(). Returns only if no re-exec was needed (or it
 * failed, in which case the slow kernels stay and a warning is printed). */
void blas_ensure_fast_kernels(char **argv);

/* The kernel OpenBLAS is using, e.g. "SkylakeX". */
const char *blas_core_name(void);

#endif
