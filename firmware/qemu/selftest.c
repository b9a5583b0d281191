/* Cortex-M4 self-test of the DSP kernels on random data (no model needed): the pruned VQ search
 * (assembly) against the full search and an int64 twin of the Python reference, ties included.
 * Run apart from tinycodec_m4.elf so that its instruction counts stay those of the encoder. */
#include <stdint.h>

#include "rvq_selftest.h"
#include "semihost.h"

int main(void)
{
    int bad = tc_rvq_selftest(12345u, 16);
    sh_puts("SELFTEST rvq_search mismatches=");
    sh_putu((uint32_t)bad);
    sh_puts(bad ? "\nRESULT FAIL\n" : "\nRESULT PASS\n");
    return bad != 0;
}
