// The BPF programs behind `comet probe` (CO-RE; loaded through the skeleton comet.skel.h).
//
// From the library's USDT probe pairs: a log2 latency histogram per operation (comet_ops) and
// per operation and shard (comet_shard_ops), one count per call. The loader attaches op_start
// to every <op>_start probe and op_done to every <op>_done probe, with the operation number as
// the USDT cookie.
//
// Kernel side, for the processes those probes have seen (and only those): fdatasync, fsync and
// msync latency from the raw syscall tracepoints, user page faults of threads that append
// (exceptions:page_fault_user), and how long a reader blocked in the library waits between its
// wake-up and running again (sched_wakeup -> sched_switch). Raw tracepoints need no tracefs.
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

#include "comet/bpf_abi.h"

#if defined(__TARGET_ARCH_x86)
#define NR_MSYNC 26
#define NR_FSYNC 74
#define NR_FDATASYNC 75
#elif defined(__TARGET_ARCH_arm64)
#define NR_FSYNC 82
#define NR_FDATASYNC 83
#define NR_MSYNC 227
#else
#error "syscall numbers for this architecture"
#endif

// Knobs, set by the loader before load.
const volatile __u32 targ_tgid = 0;   // only this process (0: every process)
const volatile bool filter_cgroup = false;  // only tasks under the cgroup in cgroup_filter

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} cgroup_filter SEC(".maps");

// ---- pinned results ---------------------------------------------------------------------------

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, COMET_OP_COUNT);
	__type(key, __u32);
	__type(value, struct comet_hist);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} comet_ops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct comet_shard_key);
	__type(value, struct comet_hist);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} comet_shard_ops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, COMET_K_COUNT);
	__type(key, __u32);
	__type(value, struct comet_hist);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} comet_kernel SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);  // tgid
	__type(value, struct comet_faults);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} comet_faults SEC(".maps");

// Written by the library, never by a program; here so that it is created with BTF.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct comet_export);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} comet_export SEC(".maps");

// ---- working state ----------------------------------------------------------------------------

struct start_key {
	__u32 tid;
	__u32 op;
};

struct {  // start time of each operation in progress, per thread
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct start_key);
	__type(value, __u64);
} starts SEC(".maps");

struct {  // processes the USDT probes have seen: the kernel-side programs count only these
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} procs SEC(".maps");

struct {  // threads that have appended
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} appenders SEC(".maps");

struct sys_start {
	__u64 ts;
	__u32 op;
	__u32 pad;
};

struct {  // a sync-family system call in progress, per thread
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct sys_start);
} sys_starts SEC(".maps");

struct {  // when a blocked reader was woken, per thread
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} wakeups SEC(".maps");

// ---- helpers ----------------------------------------------------------------------------------

// floor(log2(v)) for v > 0, 0 for v == 0: the histogram slot (at most 63).
static __always_inline __u32 slot_of(__u64 v)
{
	__u32 s = 0;
	if (v >> 32) { s += 32; v >>= 32; }
	if (v >> 16) { s += 16; v >>= 16; }
	if (v >> 8) { s += 8; v >>= 8; }
	if (v >> 4) { s += 4; v >>= 4; }
	if (v >> 2) { s += 2; v >>= 2; }
	if (v >> 1) s += 1;
	return s;
}

// Adds a call (or `calls` calls, for a sampled one) that took ns.
static __always_inline void hist_add(struct comet_hist *h, __u64 ns, __u64 calls, __u64 entries,
				     __u64 bytes, bool error)
{
	__u32 slot = slot_of(ns) & (COMET_HIST_SLOTS - 1);
	__sync_fetch_and_add(&h->count, calls);
	__sync_fetch_and_add(&h->sum_ns, ns * calls);
	if (entries)
		__sync_fetch_and_add(&h->entries, entries);
	if (bytes)
		__sync_fetch_and_add(&h->bytes, bytes);
	if (error)
		__sync_fetch_and_add(&h->errors, calls);
	__sync_fetch_and_add(&h->slots[slot], calls);
}

// The value under `key`, inserted zeroed if absent (another CPU may insert it first).
static __always_inline void *lookup_or_zero(void *map, const void *key, const void *zero)
{
	void *v = bpf_map_lookup_elem(map, key);
	if (v)
		return v;
	bpf_map_update_elem(map, key, zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, key);
}

static __always_inline bool wanted(__u32 tgid)
{
	if (targ_tgid && tgid != targ_tgid)
		return false;
	if (filter_cgroup && !bpf_current_task_under_cgroup(&cgroup_filter, 0))
		return false;
	return true;
}

static __always_inline bool comet_process(__u32 tgid)
{
	return bpf_map_lookup_elem(&procs, &tgid) != NULL;
}

static __always_inline void mark(void *map, __u32 id)
{
	static const __u8 one = 1;
	if (!bpf_map_lookup_elem(map, &id))
		bpf_map_update_elem(map, &id, &one, BPF_ANY);
}

// ---- USDT: the library's operations -----------------------------------------------------------

SEC("usdt")
int BPF_USDT(op_start, __u32 prefix_id, __u32 shard, __u64 entries, __u64 bytes)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	if (!wanted(tgid))
		return 0;
	struct start_key k = { .tid = tid, .op = (__u32)bpf_usdt_cookie(ctx) };
	__u64 now = bpf_ktime_get_ns();
	bpf_map_update_elem(&starts, &k, &now, BPF_ANY);
	mark(&procs, tgid);
	if (k.op == COMET_OP_APPEND)
		mark(&appenders, tid);
	return 0;
}

SEC("usdt")
int BPF_USDT(op_done, __u32 prefix_id, __u32 shard, __u64 entries, __u64 bytes, int status)
{
	static const struct comet_hist zero;
	__u64 id = bpf_get_current_pid_tgid();
	struct start_key k = { .tid = (__u32)id, .op = (__u32)bpf_usdt_cookie(ctx) };
	__u64 *start = bpf_map_lookup_elem(&starts, &k);
	if (!start)
		return 0;  // attached while the operation was in progress
	__u64 ns = bpf_ktime_get_ns() - *start;
	bpf_map_delete_elem(&starts, &k);
	// Sampled operations (metrics.probe_sample) say how many calls this one stands for.
	long weight = 1;
	if (bpf_usdt_arg(ctx, 5, &weight) != 0 || weight < 1)
		weight = 1;

	struct comet_hist *h = bpf_map_lookup_elem(&comet_ops, &k.op);
	if (h)
		hist_add(h, ns, weight, entries * weight, bytes * weight, status != 0);
	struct comet_shard_key sk = { .op = k.op, .prefix_id = prefix_id, .shard = shard };
	h = lookup_or_zero(&comet_shard_ops, &sk, &zero);
	if (h)
		hist_add(h, ns, weight, entries * weight, bytes * weight, status != 0);
	return 0;
}

// ---- kernel side: sync-family system calls ----------------------------------------------------

SEC("raw_tp/sys_enter")
int BPF_PROG(sys_enter, struct pt_regs *regs, long nr)
{
	__u32 op;
	if (nr == NR_FDATASYNC)
		op = COMET_K_FDATASYNC;
	else if (nr == NR_FSYNC)
		op = COMET_K_FSYNC;
	else if (nr == NR_MSYNC)
		op = COMET_K_MSYNC;
	else
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	if (!wanted(tgid) || !comet_process(tgid))
		return 0;
	struct sys_start s = { .ts = bpf_ktime_get_ns(), .op = op };
	bpf_map_update_elem(&sys_starts, &tid, &s, BPF_ANY);
	return 0;
}

SEC("raw_tp/sys_exit")
int BPF_PROG(sys_exit, struct pt_regs *regs, long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct sys_start *s = bpf_map_lookup_elem(&sys_starts, &tid);
	if (!s)
		return 0;
	__u64 ns = bpf_ktime_get_ns() - s->ts;
	__u32 op = s->op;
	bpf_map_delete_elem(&sys_starts, &tid);
	struct comet_hist *h = bpf_map_lookup_elem(&comet_kernel, &op);
	if (h)
		hist_add(h, ns, 1, 0, 0, ret < 0);
	return 0;
}

// ---- kernel side: page faults of appending threads --------------------------------------------

SEC("raw_tp/page_fault_user")
int BPF_PROG(page_fault_user, unsigned long address, struct pt_regs *regs, unsigned long error)
{
	static const struct comet_faults zero;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	if (!bpf_map_lookup_elem(&appenders, &tid))
		return 0;
	struct comet_faults *f = lookup_or_zero(&comet_faults, &tgid, &zero);
	if (!f)
		return 0;
	__sync_fetch_and_add(&f->faults, 1);
	struct start_key k = { .tid = tid, .op = COMET_OP_APPEND };
	if (bpf_map_lookup_elem(&starts, &k))
		__sync_fetch_and_add(&f->in_append, 1);
	return 0;
}

// ---- kernel side: a blocked reader's wake-up -> running ---------------------------------------

SEC("raw_tp/sched_wakeup")
int BPF_PROG(sched_wakeup, struct task_struct *p)
{
	struct start_key k = { .tid = BPF_CORE_READ(p, pid), .op = COMET_OP_WAIT };
	if (!bpf_map_lookup_elem(&starts, &k))
		return 0;
	__u64 now = bpf_ktime_get_ns();
	bpf_map_update_elem(&wakeups, &k.tid, &now, BPF_ANY);
	return 0;
}

SEC("raw_tp/sched_switch")
int BPF_PROG(sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u32 tid = BPF_CORE_READ(next, pid);
	__u64 *woken = bpf_map_lookup_elem(&wakeups, &tid);
	if (!woken)
		return 0;
	__u64 ns = bpf_ktime_get_ns() - *woken;
	bpf_map_delete_elem(&wakeups, &tid);
	__u32 op = COMET_K_WAKE_TO_RUN;
	struct comet_hist *h = bpf_map_lookup_elem(&comet_kernel, &op);
	if (h)
		hist_add(h, ns, 1, 0, 0, false);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
