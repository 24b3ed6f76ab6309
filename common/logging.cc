#include "common/logging.h"

#include <unistd.h>

#include <cstdio>
#include <ctime>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "glog/logging.h"

namespace nbrl::common {
namespace {

absl::Mutex g_mu;
std::string* g_tag ABSL_GUARDED_BY(g_mu) = nullptr;
// Serializes InitLogging's one-time glog set-up. Not g_mu: glog holds its own lock
// while it runs the sinks, and the sink takes g_mu, so calling glog with g_mu held
// could deadlock against a thread that is logging.
absl::Mutex g_init_mu(absl::kConstInit);

// Writes each message to stderr with our own prefix (glog's cannot carry a tag).
// One write(2) per line, so lines of different threads and processes sharing a
// terminal or file do not interleave.
class TaggedStderrSink : public google::LogSink {
 public:
  void send(google::LogSeverity severity, const char* full_filename,
            const char* base_filename, int line, const struct ::tm* tm_time,
            const char* message, size_t message_len) override {
    (void)full_filename;
    std::string tag;
    {
      absl::MutexLock lock(&g_mu);
      tag = g_tag ? *g_tag : "nbrl";
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    std::string out =
        absl::StrFormat("%c%02d%02d %02d:%02d:%02d.%06d %s %s:%d] %s\n",
                        google::GetLogSeverityName(severity)[0], tm_time->tm_mon + 1,
                        tm_time->tm_mday, tm_time->tm_hour, tm_time->tm_min,
                        tm_time->tm_sec, static_cast<int>(ts.tv_nsec / 1000), tag,
                        base_filename, line, absl::string_view(message, message_len));
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n = ::write(STDERR_FILENO, out.data() + done, out.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
  }
};

}  // namespace

absl::Status InitLogging(const LogOptions& options) {
  int min_level;
  if (options.level == "info") {
    min_level = google::GLOG_INFO;
  } else if (options.level == "warning") {
    min_level = google::GLOG_WARNING;
  } else if (options.level == "error") {
    min_level = google::GLOG_ERROR;
  } else {
    return absl::InvalidArgumentError(absl::StrFormat(
        "log level '%s' is not one of: info, warning, error", options.level));
  }
  {
    absl::MutexLock lock(&g_mu);
    delete g_tag;
    g_tag = new std::string(options.tag);
  }
  static TaggedStderrSink* sink = nullptr;
  {
    absl::MutexLock lock(&g_init_mu);
    if (sink == nullptr) {
      if (!google::IsGoogleLoggingInitialized()) {
        google::InitGoogleLogging(options.tag.c_str());
      }
      // No log files, nothing printed by glog itself: our sink writes stderr.
      for (int s = google::GLOG_INFO; s < google::NUM_SEVERITIES; ++s) {
        google::SetLogDestination(s, "");
      }
      FLAGS_logtostderr = false;
      FLAGS_alsologtostderr = false;
      FLAGS_stderrthreshold = google::NUM_SEVERITIES;
      sink = new TaggedStderrSink();
      google::AddLogSink(sink);
    }
  }
  FLAGS_minloglevel = min_level;
  FLAGS_v = options.verbosity;
  return absl::OkStatus();
}

std::string LogTag() {
  absl::MutexLock lock(&g_mu);
  return g_tag ? *g_tag : "nbrl";
}

}  // namespace nbrl::common
