// Publishes the policy's weight versions to any number of subscribers.
//
// Publish never blocks on subscribers: it swaps the current version (shared,
// immutable) and wakes the streams. Each subscriber stream sends the current version
// first, then whichever version is newest when it is ready for the next one, so a
// slow subscriber skips versions instead of holding training back or queueing them.
// The chunks' checksums are computed once per version, by the first stream that
// sends it (not in Publish, which the trainer calls), and shared by all streams.
//
// Thread-safe.
#ifndef NBRL_LEARNER_WEIGHT_PUBLISHER_H_
#define NBRL_LEARNER_WEIGHT_PUBLISHER_H_

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/weight_stream.h"

namespace prometheus {
class Registry;
}

namespace nbrl::learner {

struct WeightPublisherOptions {
  // Data bytes per WeightChunk message.
  size_t chunk_bytes = 1 << 20;
};

class WeightPublisher {
 public:
  // `registry` may be null.
  WeightPublisher(WeightPublisherOptions options, prometheus::Registry* registry);

  // Makes `version` current. Versions must increase (CHECK: the trainer's bug).
  void Publish(std::shared_ptr<const common::WeightVersion> version);
  // 0 before the first Publish.
  uint64_t current_version() const;
  std::shared_ptr<const common::WeightVersion> current() const;

  // Serves one subscriber that holds `have_version`: sends the current version
  // whenever it differs from the subscriber's (newer, or older after the learner
  // resumed from a checkpoint), as chunks through `write` (which returns false when
  // the stream broke), until `cancelled()` turns true or Close. Returns OK after
  // Close, Cancelled when the subscriber went away.
  absl::Status Serve(uint64_t have_version,
                     const std::function<bool(const v1::WeightChunk&)>& write,
                     const std::function<bool()>& cancelled);

  // Ends every Serve.
  void Close();

 private:
  struct Metrics;
  struct Published;  // a version and its chunk checksums
  const WeightPublisherOptions options_;
  std::shared_ptr<Metrics> metrics_;

  mutable absl::Mutex mu_;
  std::shared_ptr<Published> current_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace nbrl::learner

#endif  // NBRL_LEARNER_WEIGHT_PUBLISHER_H_
