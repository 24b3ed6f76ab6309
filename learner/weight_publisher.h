// Publishes the policy's weight versions to any number of subscribers.
//
// Publish never blocks on subscribers: it swaps the current version (shared,
// immutable) and wakes the streams from the publisher's own thread. Each subscriber
// stream (LearnerServiceImpl's SubscribeWeights) sends the current version first,
// then whichever version is newest when it is ready for the next one, so a slow
// subscriber skips versions instead of holding training back or queueing them.
// The chunks' checksums come with the version where its encoder computed them
// (WeightVersion::chunk_crcs, for this chunk size); otherwise they are computed
// once per version, by the first stream that sends each chunk (not in Publish,
// which the trainer calls), and shared by all streams. The streams send the
// chunks' bytes straight from the published version.
//
// Thread-safe.
#ifndef NBRL_LEARNER_WEIGHT_PUBLISHER_H_
#define NBRL_LEARNER_WEIGHT_PUBLISHER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <thread>

#include "absl/base/call_once.h"
#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/weight_stream.h"

namespace prometheus {
class Registry;
}

namespace nbrl::learner {

struct WeightPublisherOptions {
  // Data bytes per WeightChunk message.
  size_t chunk_bytes = 1 << 20;
};

// A published version as every stream sends it: the version (immutable, shared)
// cut into chunks, with each chunk's CRC-32C taken from the version's chunk_crcs
// when they are for this chunk size (they are trusted: the version's bytes must
// not change after they were computed), otherwise computed once, by the first
// stream that needs it, and shared by the others. Thread-safe.
class PublishedVersion {
 public:
  PublishedVersion(std::shared_ptr<const common::WeightVersion> version,
                   size_t chunk_bytes);
  uint64_t number() const { return version_->manifest.version(); }
  const std::shared_ptr<const common::WeightVersion>& version() const {
    return version_;
  }
  size_t chunk_bytes() const { return chunk_bytes_; }
  size_t chunk_count() const { return count_; }
  uint32_t ChunkCrc(size_t index) const;

 private:
  const std::shared_ptr<const common::WeightVersion> version_;
  const size_t chunk_bytes_;
  const size_t count_;
  const bool known_;  // the version's chunk_crcs are for chunk_bytes_
  std::unique_ptr<absl::once_flag[]> once_;
  std::unique_ptr<uint32_t[]> crcs_;  // crcs_[i] is set under once_[i]; both
                                      // null when known_
};

class WeightPublisher {
 public:
  // `registry` may be null.
  WeightPublisher(WeightPublisherOptions options, prometheus::Registry* registry);
  // Joins the publisher's thread. Unsubscribe every stream first.
  ~WeightPublisher();

  // Makes `version` current and returns at once: streams are woken from the
  // publisher's own thread. Versions must increase (CHECK: the trainer's bug).
  void Publish(std::shared_ptr<const common::WeightVersion> version);
  // 0 before the first Publish.
  uint64_t current_version() const;
  std::shared_ptr<const common::WeightVersion> current() const;
  // What a stream sends next: the current version whenever it differs from the
  // one its subscriber holds (newer, or older after the learner resumed from a
  // checkpoint). Null before the first Publish.
  std::shared_ptr<const PublishedVersion> current_published() const;
  // After Close, streams end (OK) once they are between versions.
  bool closed() const;

  // One per stream: `wake` is called on the publisher's thread (never on the
  // thread that calls Publish) after each Publish and after Close, so the stream
  // can look at current_published() and closed(). `wake` must be quick and must
  // not call Subscribe or Unsubscribe. Counts as an open subscription.
  uint64_t Subscribe(std::function<void()> wake);
  // When it returns, `wake` of subscription `id` is not running and is never
  // called again.
  void Unsubscribe(uint64_t id);
  // What the streams report, for the metrics.
  void RecordSent(size_t bytes);
  void RecordServed(absl::Duration took);

  // Ends every stream (between versions) and wakes them.
  void Close();

 private:
  struct Metrics;
  void NotifyLoop();

  const WeightPublisherOptions options_;
  std::shared_ptr<Metrics> metrics_;

  mutable absl::Mutex mu_;
  std::shared_ptr<const PublishedVersion> current_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // Held while wake functions run, so Unsubscribe waits for a running one.
  absl::Mutex subscribers_mu_;
  std::map<uint64_t, std::function<void()>> subscribers_
      ABSL_GUARDED_BY(subscribers_mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(subscribers_mu_) = 1;

  std::thread notifier_;
};

}  // namespace nbrl::learner

#endif  // NBRL_LEARNER_WEIGHT_PUBLISHER_H_
