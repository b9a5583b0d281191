/* Minimal Cortex-M4F startup for qemu-system-arm -M mps2-an386: vector table, .data/.bss
 * init, FPU enable, stack painting (for a high-water mark), semihosting exit with main's status. */
#include <stdint.h>

#include "semihost.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _sstack, _estack;
int main(void);

#define STACK_PAINT 0xC0FFEE11u

void reset_handler(void)
{
    for (uint32_t *s = &_sidata, *d = &_sdata; d < &_edata;)
        *d++ = *s++;
    for (uint32_t *d = &_sbss; d < &_ebss;)
        *d++ = 0;
    /* paint the unused stack below the current frame */
    uint32_t *sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    for (uint32_t *p = &_sstack; p < sp - 16;)
        *p++ = STACK_PAINT;
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: CP10/CP11 full access (FPU) */
    __asm volatile("dsb\n isb");
    sh_exit(main());
}

uint32_t stack_high_water(void)
{
    const uint32_t *p = &_sstack;
    while (p < &_estack && *p == STACK_PAINT)
        p++;
    return (uint32_t)((const uint8_t *)&_estack - (const uint8_t *)p);
}

static void fault_handler(void)
{
    sh_puts("FAULT\n");
    sh_exit(3);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&_estack), reset_handler, fault_handler, fault_handler, fault_handler, fault_handler,
    fault_handler, 0, 0, 0, 0, fault_handler, fault_handler, 0, fault_handler, fault_handler,
};
