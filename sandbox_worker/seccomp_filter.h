// The seccomp filter every sandbox runs under, compiled with libseccomp.
//
// Default: allow. Refused with EPERM: ptrace, process_vm_readv/writev, mount and
// friends, bpf, kexec_load/kexec_file_load, perf_event_open, keyctl/add_key/
// request_key, unshare, setns, clone with any CLONE_NEW* flag, userfaultfd,
// module loading, swap, reboot, and TIOCSTI on ttys. clone3 answers ENOSYS so
// that libc falls back to clone, whose flags the filter can inspect. Calls from a
// foreign architecture (32-bit syscalls on x86-64) kill the process.
#ifndef NBRL_SANDBOX_WORKER_SECCOMP_FILTER_H_
#define NBRL_SANDBOX_WORKER_SECCOMP_FILTER_H_

#include "absl/status/statusor.h"

namespace nbrl::sandbox {

// Returns a readable file descriptor (a memfd, positioned at 0) holding the
// compiled BPF program, as `bwrap --seccomp FD` expects. The caller owns it.
// Internal when libseccomp refuses a rule.
absl::StatusOr<int> CompileSeccompFilter();

}  // namespace nbrl::sandbox

#endif  // NBRL_SANDBOX_WORKER_SECCOMP_FILTER_H_
