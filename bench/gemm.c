/* bench/gemm.c — the peak of the training product (kernels/gemm.h) on this machine: GFLOP/s of
 * n x n x n products per precision and thread count, the best of repeated runs. The figure
 * `whale train` measures at start (256^3, the pool's threads) and reports MFU against is the
 * "256" row; bench/train.md names the peak it used.
 *   bench_gemm [threads]   (default: one per CPU) */
#include <stdio.h>
#include <stdlib.h>

#include "base/threadpool.h"
#include "kernels/gemm.h"
#include "kernels/isa.h"

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    threadpool *tp = tp_new(threads);
    if (!tp) return 1;
    printf("kernel %s (level %s), %d threads, bf16 instructions: %s\n", gemm_kernel_name(), isa_name(isa_level_get()),
           tp_threads(tp), gemm_cpu_has_bf16() ? "yes" : "no");
    printf("%6s %12s %12s\n", "n", "f32 GFLOP/s", "bf16 GFLOP/s");
    static const int sizes[] = {128, 256, 512, 1024};
    for (int i = 0; i < 4; i++)
        printf("%6d %12.1f %12.1f\n", sizes[i], gemm_measure_flops(sizes[i], GEMM_F32, tp, 0.5) / 1e9,
               gemm_measure_flops(sizes[i], GEMM_BF16, tp, 0.5) / 1e9);
    tp_free(tp);
    return 0;
}
