/* ARM semihosting (bkpt 0xAB): console output and exit with a status code. */
#ifndef TC_SEMIHOST_H
#define TC_SEMIHOST_H
#include <stdint.h>
void sh_puts(const char *s);
void sh_putu(uint32_t v);
__attribute__((noreturn)) void sh_exit(int status);
uint32_t stack_high_water(void);
#endif
