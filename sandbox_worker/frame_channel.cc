#include "sandbox_worker/frame_channel.h"

#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"

namespace nbrl::sandbox {
namespace {

// Milliseconds to wait in poll() until `deadline`, rounded up, at least 0.
int PollTimeoutMs(absl::Time deadline) {
  absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(
      absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))), 1 << 30));
}

}  // namespace

FrameChannel::FrameChannel(int read_fd, int write_fd, size_t max_frame_bytes)
    : read_fd_(read_fd), write_fd_(write_fd), max_frame_bytes_(max_frame_bytes) {}

FrameChannel::~FrameChannel() {
  if (read_fd_ >= 0) close(read_fd_);
  if (write_fd_ >= 0) close(write_fd_);
}

absl::Status FrameChannel::Write(const nlohmann::json& message, absl::Time deadline) {
  std::string body =
      message.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  uint32_t n = static_cast<uint32_t>(body.size());
  std::string data = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                      static_cast<char>(n >> 8), static_cast<char>(n)};
  data += body;
  size_t done = 0;
  while (done < data.size()) {
    ssize_t w = write(write_fd_, data.data() + done, data.size() - done);
    if (w > 0) {
      done += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno != EAGAIN) {
      return absl::UnavailableError(
          absl::StrCat("REPL driver pipe: ", strerror(errno)));
    }
    pollfd p = {write_fd_, POLLOUT, 0};
    int rc = poll(&p, 1, PollTimeoutMs(deadline));
    if (rc == 0)
      return absl::DeadlineExceededError("REPL driver does not read its pipe");
    if (rc < 0 && errno != EINTR) return common::ErrnoToStatus(errno, "poll");
  }
  return absl::OkStatus();
}

absl::Status FrameChannel::Fill(absl::Time deadline) {
  while (true) {
    char chunk[65536];
    ssize_t r = read(read_fd_, chunk, sizeof(chunk));
    if (r > 0) {
      buffer_.append(chunk, static_cast<size_t>(r));
      return absl::OkStatus();
    }
    if (r == 0) return absl::UnavailableError("REPL driver closed its pipe");
    if (errno == EINTR) continue;
    if (errno != EAGAIN)
      return common::ErrnoToStatus(errno, "read from the REPL driver");
    pollfd p = {read_fd_, POLLIN, 0};
    int rc = poll(&p, 1, PollTimeoutMs(deadline));
    if (rc == 0) return absl::DeadlineExceededError("no reply from the REPL driver");
    if (rc < 0 && errno != EINTR) return common::ErrnoToStatus(errno, "poll");
  }
}

absl::StatusOr<nlohmann::json> FrameChannel::Read(absl::Time deadline) {
  while (true) {
    if (buffer_.size() >= 4) {
      auto byte = [&](int i) {
        return static_cast<uint32_t>(static_cast<uint8_t>(buffer_[i]));
      };
      size_t n = (byte(0) << 24) | (byte(1) << 16) | (byte(2) << 8) | byte(3);
      if (n > max_frame_bytes_) {
        return absl::DataLossError(absl::StrCat("REPL driver sent a frame of ", n,
                                                " bytes; the limit is ",
                                                max_frame_bytes_));
      }
      if (buffer_.size() >= 4 + n) {
        nlohmann::json message =
            nlohmann::json::parse(buffer_.begin() + 4, buffer_.begin() + 4 + n, nullptr,
                                  /*allow_exceptions=*/false);
        buffer_.erase(0, 4 + n);
        if (!message.is_object()) {
          return absl::DataLossError(
              "REPL driver sent a frame that is not a JSON object");
        }
        return message;
      }
    }
    absl::Status st = Fill(deadline);
    if (!st.ok()) return st;
  }
}

}  // namespace nbrl::sandbox
