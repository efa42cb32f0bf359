/*
 * count.c - a QEMU TCG plugin (qemu-user 7.2, plugin API version 1) that counts guest
 * instructions between two marker syscalls issued by the guest (see guest_runner.py).
 *
 * Debian ships no qemu-plugin.h, so the few declarations this file uses are written out below
 * (they match QEMU 7.2's include/qemu/qemu-plugin.h).
 *
 * Arguments (qemu-aarch64 -plugin count.so,out=PATH,marker=NR[,mode=inline|cb]):
 *   out     file to which one line "<instructions>" is appended at each end marker
 *   marker  the (otherwise unused) syscall number the guest calls: a1 = 1 begin, 2 end,
 *           a2 = 0x4d455850 ("MEXP") so a stray call with that number is ignored
 *   mode    inline (default): one shared counter bumped by an inline TCG add per translation
 *           block, exact and fast for a single guest thread; cb: a helper call per block adding
 *           to a per-vCPU counter, correct with several guest threads (the sum over threads is
 *           reported)
 *
 * Build: gcc -shared -fPIC -O2 -o count.so count.c
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

/* ---- the subset of qemu-plugin.h (QEMU 7.2) used here ---- */
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t {
    const char *target_name;
    struct { int min; int cur; } version;
    bool system_emulation;
    union { struct { int smp_vcpus; int max_vcpus; } system; };
} qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_syscall_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num,
                                              uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                                              uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_syscall_cb_t cb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
/* ---- end of the qemu-plugin.h subset ---- */

EXPORT int qemu_plugin_version = 1;

#define MAX_VCPUS 1024
#define MARK_MAGIC 0x4d455850ULL

static uint64_t inline_count;                 /* mode=inline */
static uint64_t vcpu_count[MAX_VCPUS];        /* mode=cb */
static bool per_vcpu;
static int64_t marker_nr = -1;
static uint64_t start;
static bool started;
static FILE *out;

static uint64_t total(void)
{
    if (!per_vcpu)
        return __atomic_load_n(&inline_count, __ATOMIC_RELAXED);
    uint64_t s = 0;
    for (int i = 0; i < MAX_VCPUS; i++)
        s += __atomic_load_n(&vcpu_count[i], __ATOMIC_RELAXED);
    return s;
}

static void tb_exec(unsigned int vcpu_index, void *udata)
{
    uint64_t n = (uint64_t)(uintptr_t)udata;
    vcpu_count[vcpu_index % MAX_VCPUS] += n;  /* each slot is written by its own vCPU thread only */
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    if (per_vcpu)
        qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)n);
    else
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &inline_count, n);
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    if (num != marker_nr || a2 != MARK_MAGIC)
        return;
    uint64_t now = total();
    if (a1 == 1) {
        start = now;
        started = true;
    } else if (a1 == 2 && started) {
        fprintf(out, "%" PRIu64 "\n", now - start);
        fflush(out);
        started = false;
    }
}

static void at_exit(qemu_plugin_id_t id, void *udata)
{
    if (out)
        fclose(out);
    out = NULL;
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0)
            path = argv[i] + 4;
        else if (strncmp(argv[i], "marker=", 7) == 0)
            marker_nr = strtoll(argv[i] + 7, NULL, 0);
        else if (strcmp(argv[i], "mode=cb") == 0)
            per_vcpu = true;
        else if (strcmp(argv[i], "mode=inline") == 0)
            per_vcpu = false;
        else {
            fprintf(stderr, "count.so: unknown argument '%s'\n", argv[i]);
            return -1;
        }
    }
    if (!path || marker_nr < 0) {
        fprintf(stderr, "count.so: needs out=PATH and marker=NR\n");
        return -1;
    }
    out = fopen(path, "a");
    if (!out) {
        perror(path);
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
