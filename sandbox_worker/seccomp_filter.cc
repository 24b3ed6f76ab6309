#include "sandbox_worker/seccomp_filter.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace nbrl::sandbox {
namespace {

constexpr int kRefusedSyscalls[] = {
    SCMP_SYS(ptrace),
    SCMP_SYS(process_vm_readv),
    SCMP_SYS(process_vm_writev),
    SCMP_SYS(mount),
    SCMP_SYS(umount2),
    SCMP_SYS(pivot_root),
    SCMP_SYS(chroot),
    SCMP_SYS(bpf),
    SCMP_SYS(kexec_load),
    SCMP_SYS(kexec_file_load),
    SCMP_SYS(perf_event_open),
    SCMP_SYS(keyctl),
    SCMP_SYS(add_key),
    SCMP_SYS(request_key),
    SCMP_SYS(unshare),
    SCMP_SYS(setns),
    SCMP_SYS(userfaultfd),
    SCMP_SYS(init_module),
    SCMP_SYS(finit_module),
    SCMP_SYS(delete_module),
    SCMP_SYS(swapon),
    SCMP_SYS(swapoff),
    SCMP_SYS(reboot),
    SCMP_SYS(open_tree),
    SCMP_SYS(move_mount),
    SCMP_SYS(fsopen),
    SCMP_SYS(fsmount),
    SCMP_SYS(fspick),
    SCMP_SYS(name_to_handle_at),
    SCMP_SYS(open_by_handle_at),
    SCMP_SYS(acct),
    SCMP_SYS(settimeofday),
    SCMP_SYS(clock_settime),
};

struct CtxDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};

absl::Status Rule(scmp_filter_ctx ctx, uint32_t action, int syscall, unsigned count,
                  const scmp_arg_cmp* args) {
  int rc = seccomp_rule_add_array(ctx, action, syscall, count, args);
  if (rc < 0) {
    char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, syscall);
    std::string what = name ? name : absl::StrCat("#", syscall);
    free(name);
    return absl::InternalError(
        absl::StrCat("seccomp: cannot add a rule for ", what, ": ", strerror(-rc)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int> CompileSeccompFilter() {
  std::unique_ptr<void, CtxDeleter> ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (!ctx) return absl::InternalError("seccomp_init failed");
  const uint32_t refuse = SCMP_ACT_ERRNO(EPERM);
  for (int sc : kRefusedSyscalls) {
    absl::Status st = Rule(ctx.get(), refuse, sc, 0, nullptr);
    if (!st.ok()) return st;
  }
  // clone(flags, ...): refuse any namespace flag. clone3 passes its flags in
  // memory the filter cannot read, so it is made to look absent. One rule per
  // flag: "flags & mask != 0" is not expressible as a single comparison.
  for (uint64_t flag : {CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
                        CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP, CLONE_NEWTIME}) {
    scmp_arg_cmp has_flag = SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag);
    absl::Status st = Rule(ctx.get(), refuse, SCMP_SYS(clone), 1, &has_flag);
    if (!st.ok()) return st;
  }
  absl::Status st =
      Rule(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0, nullptr);
  if (!st.ok()) return st;
  scmp_arg_cmp tiocsti = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xFFFFFFFFu, TIOCSTI);
  st = Rule(ctx.get(), refuse, SCMP_SYS(ioctl), 1, &tiocsti);
  if (!st.ok()) return st;

  int fd = memfd_create("nbrl-seccomp", MFD_CLOEXEC);
  if (fd < 0)
    return common::ErrnoToStatus(errno, "memfd_create for the seccomp filter");
  int rc = seccomp_export_bpf(ctx.get(), fd);
  if (rc < 0 || lseek(fd, 0, SEEK_SET) != 0) {
    close(fd);
    return absl::InternalError(
        absl::StrCat("seccomp_export_bpf failed: ", strerror(-rc)));
  }
  return fd;
}

}  // namespace nbrl::sandbox
