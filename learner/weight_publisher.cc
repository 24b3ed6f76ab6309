#include "learner/weight_publisher.h"

#include <vector>

#include "absl/base/call_once.h"
#include "absl/time/clock.h"
#include "common/metrics.h"
#include "glog/logging.h"

namespace nbrl::learner {

struct WeightPublisher::Metrics {
  explicit Metrics(prometheus::Registry& r)
      : versions(common::CounterFamily(r,
                                       "nbrl_learner_weight_versions_published_total",
                                       "Weight versions published.")
                     .Add({})),
        sent_bytes(common::CounterFamily(r, "nbrl_learner_weight_sent_bytes_total",
                                         "Weight bytes streamed to subscribers.")
                       .Add({})),
        served(
            common::CounterFamily(r, "nbrl_learner_weight_versions_served_total",
                                  "Complete weight versions streamed to subscribers.")
                .Add({})),
        subscribers(common::GaugeFamily(r, "nbrl_learner_weight_subscribers",
                                        "Open weight subscriptions.")
                        .Add({})),
        send_seconds(
            common::HistogramFamily(r, "nbrl_learner_weight_send_seconds",
                                    "Time to stream one version to one subscriber.")
                .Add({}, common::LatencyBucketsSeconds())) {}
  prometheus::Counter& versions;
  prometheus::Counter& sent_bytes;
  prometheus::Counter& served;
  prometheus::Gauge& subscribers;
  prometheus::Histogram& send_seconds;
};

PublishedVersion::PublishedVersion(std::shared_ptr<const common::WeightVersion> version,
                                   size_t chunk_bytes)
    : version_(std::move(version)),
      chunk_bytes_(chunk_bytes),
      count_(common::ChunkCount(*version_, chunk_bytes)),
      known_(chunk_bytes != 0 && version_->chunk_crc_bytes == chunk_bytes &&
             version_->chunk_crcs.size() == count_),
      once_(known_ ? nullptr : new absl::once_flag[count_]),
      crcs_(known_ ? nullptr : new uint32_t[count_]) {}

uint32_t PublishedVersion::ChunkCrc(size_t index) const {
  CHECK_LT(index, count_);
  if (known_) return version_->chunk_crcs[index];
  absl::call_once(once_[index], [&] {
    crcs_[index] = common::ChunkCrc(*version_, chunk_bytes_, index);
  });
  return crcs_[index];
}

WeightPublisher::WeightPublisher(WeightPublisherOptions options,
                                 prometheus::Registry* registry)
    : options_(options) {
  if (registry) metrics_ = std::make_shared<Metrics>(*registry);
  notifier_ = std::thread([this] { NotifyLoop(); });
}

WeightPublisher::~WeightPublisher() {
  {
    absl::MutexLock lock(&subscribers_mu_);
    CHECK(subscribers_.empty())
        << subscribers_.size()
        << " weight streams still subscribed: shut the server down first";
  }
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  notifier_.join();
}

void WeightPublisher::Publish(std::shared_ptr<const common::WeightVersion> version) {
  auto published = std::make_shared<const PublishedVersion>(std::move(version),
                                                            options_.chunk_bytes);
  absl::MutexLock lock(&mu_);
  CHECK(current_ == nullptr || published->number() > current_->number())
      << "weight versions must increase: " << published->number() << " after "
      << current_->number();
  current_ = std::move(published);
  wake_pending_ = true;
  if (metrics_) metrics_->versions.Increment();
}

uint64_t WeightPublisher::current_version() const {
  absl::MutexLock lock(&mu_);
  return current_ ? current_->number() : 0;
}

std::shared_ptr<const common::WeightVersion> WeightPublisher::current() const {
  absl::MutexLock lock(&mu_);
  return current_ ? current_->version() : nullptr;
}

std::shared_ptr<const PublishedVersion> WeightPublisher::current_published() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

bool WeightPublisher::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

uint64_t WeightPublisher::Subscribe(std::function<void()> wake) {
  absl::MutexLock lock(&subscribers_mu_);
  const uint64_t id = next_id_++;
  subscribers_.emplace(id, std::move(wake));
  if (metrics_) metrics_->subscribers.Increment();
  return id;
}

void WeightPublisher::Unsubscribe(uint64_t id) {
  absl::MutexLock lock(&subscribers_mu_);
  if (subscribers_.erase(id) > 0 && metrics_) metrics_->subscribers.Decrement();
}

void WeightPublisher::RecordSent(size_t bytes) {
  if (metrics_) metrics_->sent_bytes.Increment(static_cast<double>(bytes));
}

void WeightPublisher::RecordServed(absl::Duration took) {
  if (metrics_) {
    metrics_->served.Increment();
    metrics_->send_seconds.Observe(absl::ToDoubleSeconds(took));
  }
}

void WeightPublisher::NotifyLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto due = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return wake_pending_ || stopping_;
      };
      mu_.Await(absl::Condition(&due));
      if (!wake_pending_) return;  // stopping, nothing left to tell
      wake_pending_ = false;
    }
    absl::MutexLock lock(&subscribers_mu_);
    for (auto& [id, wake] : subscribers_) wake();
  }
}

void WeightPublisher::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
  wake_pending_ = true;
}

}  // namespace nbrl::learner
