/* QEMU TCG plugin: exact count of executed guest instructions, in total and per function.
 *
 *   qemu-system-arm ... -plugin ./libinsn_count.so,syms=FILE,out=FILE
 *
 * syms: lines "start end name" (hex, end exclusive) from the ELF symbol table; out: lines
 * "count name" plus "count TOTAL" and "count OTHER". Every instruction gets an inline 64-bit add
 * into the counter of the function holding its PC, decided once at translation time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu-plugin.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MAX_FUNCS 4096
typedef struct { uint64_t start, end; char name[96]; } func_t;
static func_t funcs[MAX_FUNCS];
static uint64_t counts[MAX_FUNCS + 1]; /* last slot: PCs outside every function */
static int n_funcs;
static char out_path[512] = "insn_count.txt";

static int cmp_func(const void *a, const void *b)
{
    const func_t *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

static int lookup(uint64_t pc)
{
    int lo = 0, hi = n_funcs - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (pc < funcs[mid].start)
            hi = mid - 1;
        else if (pc >= funcs[mid].end)
            lo = mid + 1;
        else
            return mid;
    }
    return MAX_FUNCS;
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        int f = lookup(qemu_plugin_insn_vaddr(insn));
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &counts[f], 1);
    }
}

static void at_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id; (void)userdata;
    FILE *fp = fopen(out_path, "w");
    if (!fp) {
        qemu_plugin_outs("insn_count: cannot write the output file\n");
        return;
    }
    uint64_t total = 0;
    for (int i = 0; i <= MAX_FUNCS; i++)
        total += counts[i];
    fprintf(fp, "%llu TOTAL\n%llu OTHER\n", (unsigned long long)total, (unsigned long long)counts[MAX_FUNCS]);
    for (int i = 0; i < n_funcs; i++)
        if (counts[i])
            fprintf(fp, "%llu %s\n", (unsigned long long)counts[i], funcs[i].name);
    fclose(fp);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    const char *syms = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "syms=", 5))
            syms = argv[i] + 5;
        else if (!strncmp(argv[i], "out=", 4))
            snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
    }
    if (syms) {
        FILE *fp = fopen(syms, "r");
        if (!fp)
            return -1;
        unsigned long long s, e;
        char name[96];
        while (n_funcs < MAX_FUNCS && fscanf(fp, "%llx %llx %95s", &s, &e, name) == 3) {
            funcs[n_funcs].start = s;
            funcs[n_funcs].end = e;
            strcpy(funcs[n_funcs].name, name);
            n_funcs++;
        }
        fclose(fp);
        qsort(funcs, n_funcs, sizeof funcs[0], cmp_func);
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
