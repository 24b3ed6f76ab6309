#include "common/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <prometheus/exposer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <exception>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/version.h"
#include "glog/logging.h"

namespace nbrl::common {
namespace {

std::string HostPort(const std::string& host, int port) {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

// Binds a throwaway socket to learn why the exposer could not: civetweb's exception
// says only that it failed.
absl::Status ProbeBind(const std::string& host, int port) {
  bool v6 = host.find(':') != std::string::npos;
  int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoToStatus(errno, "socket");
  int rc;
  if (v6) {
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, host.c_str(), &addr.sin6_addr) != 1) {
      ::close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat("'", host, "' is not an IPv6 address"));
    }
    rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  } else {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
      ::close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat("'", host, "' is not an IPv4 address (use e.g. 127.0.0.1)"));
    }
    rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  }
  int err = errno;
  ::close(fd);
  if (rc == 0) return absl::OkStatus();
  if (err == EADDRINUSE) {
    return absl::FailedPreconditionError(absl::StrCat(
        "metrics port ", port, " on ", host,
        " is already in use (another nbrl process?); choose a free port or set "
        "metrics.port=0 to let the OS pick one"));
  }
  return ErrnoToStatus(err,
                       absl::StrCat("cannot bind metrics to ", HostPort(host, port)));
}

bool EndsWithUnit(const std::string& name) {
  for (const char* unit : {"_seconds", "_bytes", "_tokens", "_ratio", "_steps",
                           "_actions", "_groups", "_versions", "_items"}) {
    if (absl::EndsWith(name, unit)) return true;
  }
  return false;
}

}  // namespace

MetricsServer::MetricsServer(std::string host, int port,
                             std::unique_ptr<prometheus::Exposer> exposer,
                             std::shared_ptr<prometheus::Registry> registry)
    : host_(std::move(host)),
      port_(port),
      exposer_(std::move(exposer)),
      registry_(std::move(registry)) {}

MetricsServer::~MetricsServer() = default;

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const MetricsOptions& options, std::shared_ptr<prometheus::Registry> registry) {
  if (!options.enabled) {
    return std::unique_ptr<MetricsServer>(
        new MetricsServer(options.host, 0, nullptr, std::move(registry)));
  }
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics port ", options.port, " is not in [0, 65535]"));
  }
  // Check the address first: civetweb reports a bad host only as a failed start.
  if (absl::Status st = ProbeBind(options.host, options.port); !st.ok()) return st;
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer =
        std::make_unique<prometheus::Exposer>(HostPort(options.host, options.port),
                                              /*num_threads=*/2);
  } catch (const std::exception& e) {
    absl::Status probe = ProbeBind(options.host, options.port);
    if (!probe.ok()) return probe;
    return absl::UnavailableError(absl::StrCat("cannot start metrics server on ",
                                               HostPort(options.host, options.port),
                                               ": ", e.what()));
  }
  exposer->RegisterCollectable(registry);
  std::vector<int> ports = exposer->GetListeningPorts();
  if (ports.empty()) {
    return absl::InternalError("metrics server started but reports no listening port");
  }
  return std::unique_ptr<MetricsServer>(new MetricsServer(
      options.host, ports[0], std::move(exposer), std::move(registry)));
}

std::string MetricsServer::address() const {
  return port_ == 0 ? "" : HostPort(host_, port_);
}

std::string MetricsServer::url() const {
  return port_ == 0 ? "" : absl::StrCat("http://", address(), "/metrics");
}

absl::Status ValidateMetricName(const std::string& name, const std::string& kind) {
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat("metric name ", name, " (", kind, "): ", why));
  };
  if (!absl::StartsWith(name, "nbrl_")) return bad("must start with nbrl_");
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
      return bad("only lower-case letters, digits and '_' are allowed");
    }
  }
  if (absl::StrContains(name, "__") || absl::EndsWith(name, "_")) {
    return bad("no empty name parts");
  }
  bool total = absl::EndsWith(name, "_total");
  if (kind == "counter" && !total) return bad("counters end in _total");
  if (kind != "counter" && total) return bad("only counters end in _total");
  if (kind == "histogram" && !EndsWithUnit(name)) {
    return bad("histograms end in their base unit, e.g. _seconds or _bytes");
  }
  return absl::OkStatus();
}

prometheus::Family<prometheus::Counter>& CounterFamily(prometheus::Registry& registry,
                                                       const std::string& name,
                                                       const std::string& help) {
  absl::Status st = ValidateMetricName(name, "counter");
  CHECK(st.ok()) << st;
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

prometheus::Family<prometheus::Gauge>& GaugeFamily(prometheus::Registry& registry,
                                                   const std::string& name,
                                                   const std::string& help) {
  absl::Status st = ValidateMetricName(name, "gauge");
  CHECK(st.ok()) << st;
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry);
}

prometheus::Family<prometheus::Histogram>& HistogramFamily(
    prometheus::Registry& registry, const std::string& name, const std::string& help) {
  absl::Status st = ValidateMetricName(name, "histogram");
  CHECK(st.ok()) << st;
  return prometheus::BuildHistogram().Name(name).Help(help).Register(registry);
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> out;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) out.push_back(v);
  return out;
}

std::vector<double> LatencyBucketsSeconds() {
  return ExponentialBuckets(1e-4, std::sqrt(10.0), 15);
}

void AddProcessMetrics(prometheus::Registry& registry, const std::string& component) {
  GaugeFamily(registry, "nbrl_build_info", "nbrl build: always 1, labels say which.")
      .Add({{"version", ::nbrl::kVersion}, {"component", component}})
      .Set(1);
  GaugeFamily(registry, "nbrl_process_start_time_seconds",
              "Start time of the process since the Unix epoch.")
      .Add({{"component", component}})
      .Set(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
}

}  // namespace nbrl::common
