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

struct WeightPublisher::Published {
  std::shared_ptr<const common::WeightVersion> version;
  absl::once_flag crcs_once;
  std::vector<uint32_t> crcs;  // set under crcs_once
  uint64_t number() const { return version->manifest.version(); }
};

WeightPublisher::WeightPublisher(WeightPublisherOptions options,
                                 prometheus::Registry* registry)
    : options_(options) {
  if (registry) metrics_ = std::make_shared<Metrics>(*registry);
}

void WeightPublisher::Publish(std::shared_ptr<const common::WeightVersion> version) {
  absl::MutexLock lock(&mu_);
  CHECK(current_ == nullptr || version->manifest.version() > current_->number())
      << "weight versions must increase: " << version->manifest.version() << " after "
      << current_->number();
  auto published = std::make_shared<Published>();
  published->version = std::move(version);
  current_ = std::move(published);
  if (metrics_) metrics_->versions.Increment();
}

uint64_t WeightPublisher::current_version() const {
  absl::MutexLock lock(&mu_);
  return current_ ? current_->number() : 0;
}

std::shared_ptr<const common::WeightVersion> WeightPublisher::current() const {
  absl::MutexLock lock(&mu_);
  return current_ ? current_->version : nullptr;
}

absl::Status WeightPublisher::Serve(
    uint64_t have_version, const std::function<bool(const v1::WeightChunk&)>& write,
    const std::function<bool()>& cancelled) {
  if (metrics_) metrics_->subscribers.Increment();
  struct Done {
    Metrics* m;
    ~Done() {
      if (m) m->subscribers.Decrement();
    }
  } done{metrics_.get()};
  while (true) {
    std::shared_ptr<Published> next;
    {
      absl::MutexLock lock(&mu_);
      auto newer = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return closed_ || (current_ && current_->number() != have_version);
      };
      // Wake up now and then to notice a cancelled subscriber.
      while (!mu_.AwaitWithTimeout(absl::Condition(&newer), absl::Milliseconds(200))) {
        if (cancelled()) return absl::CancelledError("weight subscriber went away");
      }
      if (closed_) return absl::OkStatus();
      next = current_;
    }
    absl::Time start = absl::Now();
    absl::call_once(next->crcs_once, [&] {
      next->crcs = common::ChunkCrcs(*next->version, options_.chunk_bytes);
    });
    if (!common::ForEachChunk(
            *next->version, options_.chunk_bytes,
            [&](const v1::WeightChunk& chunk) {
              if (cancelled() || !write(chunk)) return false;
              if (metrics_) {
                metrics_->sent_bytes.Increment(
                    static_cast<double>(chunk.data().size()));
              }
              return true;
            },
            &next->crcs)) {
      return absl::CancelledError("weight subscriber went away");
    }
    if (metrics_) {
      metrics_->served.Increment();
      metrics_->send_seconds.Observe(absl::ToDoubleSeconds(absl::Now() - start));
    }
    have_version = next->number();
  }
}

void WeightPublisher::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

}  // namespace nbrl::learner
