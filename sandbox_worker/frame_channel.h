// The worker's side of the REPL driver protocol (see repl_driver.py): JSON
// messages framed by a 4-byte big-endian length, over a pair of pipes.
//
// Thread safety: not thread-safe; one FrameChannel belongs to one Session, which
// serializes its use.
#ifndef NBRL_SANDBOX_WORKER_FRAME_CHANNEL_H_
#define NBRL_SANDBOX_WORKER_FRAME_CHANNEL_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace nbrl::sandbox {

class FrameChannel {
 public:
  // Takes ownership of two non-blocking descriptors: `read_fd` receives the
  // driver's frames, `write_fd` carries ours. Frames longer than `max_frame_bytes`
  // are refused (a hostile cell cannot make the worker allocate without bound).
  FrameChannel(int read_fd, int write_fd, size_t max_frame_bytes);
  ~FrameChannel();
  FrameChannel(const FrameChannel&) = delete;
  FrameChannel& operator=(const FrameChannel&) = delete;

  // Sends one message. DeadlineExceeded when the pipe stays full past `deadline`,
  // Unavailable when the driver is gone.
  absl::Status Write(const nlohmann::json& message, absl::Time deadline);
  // Receives one message. DeadlineExceeded when none is complete by `deadline`
  // (a partial frame is kept for the next call), Unavailable at end of stream,
  // DataLoss for an oversized frame or one that is not a JSON object.
  absl::StatusOr<nlohmann::json> Read(absl::Time deadline);

 private:
  // Reads what is available into buffer_, waiting until `deadline`.
  absl::Status Fill(absl::Time deadline);

  int read_fd_;
  int write_fd_;
  const size_t max_frame_bytes_;
  std::string buffer_;
};

}  // namespace nbrl::sandbox

#endif  // NBRL_SANDBOX_WORKER_FRAME_CHANNEL_H_
