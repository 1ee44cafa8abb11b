/* The ABI shared by the BPF programs (comet.bpf.c), their loader (`comet probe`) and the library
 * (which writes the export map): operation numbers and the layouts of every pinned map. C,
 * fixed-width fields only, no padding the compiler could choose: the same bytes in the kernel,
 * in bpftool's BTF dump and in user space. Include <linux/types.h> (user space) or vmlinux.h
 * (BPF) first.
 *
 * A layout change bumps COMET_ABI_VERSION: the loader then replaces pinned maps of the old
 * layout, and the library ignores an export map whose header names another version.
 */
#ifndef COMET_BPF_ABI_H
#define COMET_BPF_ABI_H

#define COMET_ABI_VERSION 1
#define COMET_HIST_SLOTS 64 /* slot i: [2^i, 2^(i+1)) ns; slot 0 also holds 0 */

/* The operations timed from the library's USDT probe pairs (<op>_start / <op>_done); the index
 * of comet_ops and the `op` of comet_shard_ops. The names are the probes' prefixes. */
enum comet_op {
	COMET_OP_APPEND = 0,
	COMET_OP_SYNC = 1,
	COMET_OP_COMMIT = 2,
	COMET_OP_ROTATE = 3,
	COMET_OP_PREALLOC = 4,
	COMET_OP_PREFAULT = 5,
	COMET_OP_READ = 6,
	COMET_OP_WAIT = 7,
	COMET_OP_TAKEOVER = 8,
	COMET_OP_REBALANCE = 9,
	COMET_OP_RECOVERY = 10,
	COMET_OP_COUNT = 11,
};

/* Work the kernel does for processes using Comet: the index of comet_kernel. */
enum comet_kernel_op {
	COMET_K_FDATASYNC = 0, /* fdatasync(2), sys_enter -> sys_exit */
	COMET_K_FSYNC = 1,     /* fsync(2) */
	COMET_K_MSYNC = 2,     /* msync(2): the library's write-back of segment mappings */
	COMET_K_WAKE_TO_RUN = 3, /* a blocked reader: woken (sched_wakeup) -> running (sched_switch) */
	COMET_K_COUNT = 4,
};

/* A latency histogram with totals (value of comet_ops, comet_shard_ops and comet_kernel). One
 * `count` per call, whatever the call handled; `entries` and `bytes` add up what the calls
 * handled (the probes' `done` arguments); `errors` counts calls whose status was not OK. */
struct comet_hist {
	__u64 count;
	__u64 sum_ns;
	__u64 entries;
	__u64 bytes;
	__u64 errors;
	__u64 slots[COMET_HIST_SLOTS];
};

/* Key of comet_shard_ops: one histogram per operation and shard (prefix id and shard number as
 * the library numbers them; 0xFFFFFFFF for operations that span every shard). */
struct comet_shard_key {
	__u32 op;
	__u32 prefix_id;
	__u32 shard;
	__u32 pad;
};

/* Value of comet_faults, keyed by process id (tgid): user page faults of threads that have
 * appended (exceptions:page_fault_user), and how many of them came inside an append call. */
struct comet_faults {
	__u64 faults;
	__u64 in_append;
};

/* The library's always-on histograms, exported: the one element of the pinned BPF_F_MMAPABLE
 * array comet_export. The loader creates it and writes magic and version; every process using
 * the library with this pin directory maps it and adds to it with atomic adds (no system call),
 * the same figures it adds to its control region (`comet stats`): append timed one call in 16,
 * each timed call counting for 16. Indexed like the control region's histograms. */
#define COMET_EXPORT_MAGIC 0x505845544d4f43ULL /* "COMTEXP" */
#define COMET_EXPORT_OPS 5 /* append, sync, rotate, read, ack */
struct comet_export_op {
	__u64 count;
	__u64 sum_ns;
	__u64 slots[COMET_HIST_SLOTS];
};
struct comet_export {
	__u64 magic;   /* COMET_EXPORT_MAGIC once the loader initialised it */
	__u32 version; /* COMET_ABI_VERSION */
	__u32 ops;     /* COMET_EXPORT_OPS */
	__u64 attached; /* processes that mapped it (adds only) */
	struct comet_export_op op[COMET_EXPORT_OPS];
};

/* Map names, as pinned under the pin directory (default /sys/fs/bpf/comet). */
#define COMET_PIN_DEFAULT "/sys/fs/bpf/comet"
#define COMET_EXPORT_MAP "comet_export"

#endif /* COMET_BPF_ABI_H */
