#include "learner/group_journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace nbrl::learner {
namespace {

constexpr size_t kHeaderBytes = 8;
// A group larger than this is not a group (the validator caps far lower).
constexpr uint32_t kMaxRecordBytes = 1u << 30;

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

std::string Dirname(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

}  // namespace

absl::StatusOr<std::unique_ptr<GroupJournal>> GroupJournal::Create(
    const std::string& path, bool sync) {
  RETURN_IF_ERROR(common::MakeDirectories(Dirname(path)));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return common::ErrnoToStatus(errno, absl::StrCat("cannot create journal ", path));
  }
  return std::unique_ptr<GroupJournal>(new GroupJournal(path, fd, sync));
}

GroupJournal::~GroupJournal() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status GroupJournal::Append(const v1::TrajectoryGroup& group) {
  ASSIGN_OR_RETURN(uint64_t record, Write(group));
  return SyncThrough(record);
}

absl::Status GroupJournal::SyncLocked() {
  if (!sync_failure_.ok()) return sync_failure_;
  ++syncs_;
  if (::fdatasync(fd_) != 0) {
    sync_failure_ = common::ErrnoToStatus(errno, absl::StrCat("cannot sync ", path_));
  }
  return sync_failure_;
}

absl::Status GroupJournal::SyncThrough(uint64_t record) {
  absl::MutexLock lock(&sync_mu_);
  if (!sync_ || synced_ >= record) return absl::OkStatus();
  const uint64_t written = records_.load();  // all of them are covered
  RETURN_IF_ERROR(SyncLocked());
  synced_ = written;
  synced_through_.store(written, std::memory_order_release);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> GroupJournal::Write(const v1::TrajectoryGroup& group) {
  std::string payload;
  if (!group.SerializeToString(&payload) || payload.size() > kMaxRecordBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("group ", group.group_id(), " cannot be journaled"));
  }
  buffer_.clear();
  PutU32(buffer_, static_cast<uint32_t>(payload.size()));
  PutU32(buffer_, common::Crc32c(payload.data(), payload.size()));
  buffer_.append(payload);
  const char* p = buffer_.data();
  size_t left = buffer_.size();
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return common::ErrnoToStatus(errno, absl::StrCat("cannot write ", path_));
    p += n;
    left -= static_cast<size_t>(n);
  }
  bytes_ += buffer_.size();
  return ++records_;
}

absl::Status GroupJournal::Rename(const std::string& path) {
  {
    absl::MutexLock lock(&sync_mu_);
    RETURN_IF_ERROR(SyncLocked());
  }
  if (::rename(path_.c_str(), path.c_str()) != 0) {
    return common::ErrnoToStatus(errno,
                                 absl::StrCat("cannot rename ", path_, " to ", path));
  }
  path_ = path;
  return absl::OkStatus();
}

absl::StatusOr<GroupJournal::Contents> GroupJournal::Read(const std::string& path) {
  ASSIGN_OR_RETURN(std::string data, common::ReadFile(path));
  Contents out;
  size_t at = 0;
  while (at < data.size()) {
    if (data.size() - at < kHeaderBytes) {
      out.torn_tail = true;
      break;
    }
    const uint32_t len = GetU32(data.data() + at);
    const uint32_t crc = GetU32(data.data() + at + 4);
    const bool whole = len <= kMaxRecordBytes && data.size() - at - kHeaderBytes >= len;
    const bool last = !whole || at + kHeaderBytes + len == data.size();
    if (!whole || common::Crc32c(data.data() + at + kHeaderBytes, len) != crc) {
      if (last) {
        out.torn_tail = true;
        break;
      }
      return absl::DataLossError(absl::StrCat("journal ", path, ": record at byte ", at,
                                              " fails its checksum"));
    }
    v1::TrajectoryGroup g;
    if (!g.ParseFromArray(data.data() + at + kHeaderBytes, static_cast<int>(len))) {
      return absl::DataLossError(absl::StrCat("journal ", path, ": record at byte ", at,
                                              " is not a TrajectoryGroup"));
    }
    out.groups.push_back(std::move(g));
    at += kHeaderBytes + len;
  }
  return out;
}

}  // namespace nbrl::learner
