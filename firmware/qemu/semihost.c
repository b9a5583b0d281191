#include "semihost.h"

static int sh_call(int op, const void *arg)
{
    register int r0 __asm("r0") = op;
    register const void *r1 __asm("r1") = arg;
    __asm volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void sh_puts(const char *s) { sh_call(0x04, s); } /* SYS_WRITE0 */

void sh_putu(uint32_t v)
{
    char buf[12];
    int i = 11;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    sh_puts(buf + i);
}

void sh_exit(int status)
{
    /* SYS_EXIT_EXTENDED: ADP_Stopped_ApplicationExit with the status as QEMU's exit code */
    uint32_t block[2] = {0x20026u, (uint32_t)status};
    sh_call(0x20, block);
    for (;;)
        sh_call(0x18, (const void *)0x20026u); /* plain SYS_EXIT if the extended call is absent */
}
