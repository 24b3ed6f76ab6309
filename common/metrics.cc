#include "common/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <sstream>

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

// Binds and listens on host:port. FailedPrecondition when the port is in use,
// InvalidArgument for a bad host; the fd on success.
absl::StatusOr<int> Listen(const std::string& host, int port) {
  bool v6 = host.find(':') != std::string::npos;
  int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoToStatus(errno, "socket");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
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
  if (rc != 0 || ::listen(fd, 16) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EADDRINUSE) {
      return absl::FailedPreconditionError(absl::StrCat(
          "metrics port ", port, " on ", host,
          " is already in use (another nbrl process?); choose a free port or set "
          "metrics.port=0 to let the OS pick one"));
    }
    return ErrnoToStatus(err,
                         absl::StrCat("cannot bind metrics to ", HostPort(host, port)));
  }
  return fd;
}

int BoundPort(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (addr.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  }
  return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

bool EndsWithUnit(const std::string& name) {
  for (const char* unit : {"_seconds", "_bytes", "_tokens", "_ratio", "_steps",
                           "_actions", "_groups", "_versions", "_items"}) {
    if (absl::EndsWith(name, unit)) return true;
  }
  return false;
}

}  // namespace

MetricsServer::MetricsServer(std::string host, int port, int listen_fd,
                             std::shared_ptr<prometheus::Registry> registry)
    : host_(std::move(host)),
      port_(port),
      listen_fd_(listen_fd),
      registry_(std::move(registry)) {
  if (listen_fd_ >= 0) thread_ = std::thread([this] { Serve(); });
}

MetricsServer::~MetricsServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const MetricsOptions& options, std::shared_ptr<prometheus::Registry> registry) {
  if (!options.enabled) {
    return std::unique_ptr<MetricsServer>(
        new MetricsServer(options.host, 0, -1, std::move(registry)));
  }
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics port ", options.port, " is not in [0, 65535]"));
  }
  absl::StatusOr<int> fd = Listen(options.host, options.port);
  if (!fd.ok()) return fd.status();
  return std::unique_ptr<MetricsServer>(
      new MetricsServer(options.host, BoundPort(*fd), *fd, std::move(registry)));
}

void MetricsServer::Serve() {
  while (!stop_) {
    struct pollfd pfd = {listen_fd_, POLLIN, 0};
    if (::poll(&pfd, 1, /*timeout=*/200) <= 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    Answer(fd);
    ::close(fd);
  }
}

void MetricsServer::Answer(int fd) {
  // Read the request head (bounded in size and time), answer, close.
  struct timeval tv = {2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  std::string request;
  char buf[2048];
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < 16384) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    request.append(buf, static_cast<size_t>(n));
  }
  std::string status = "200 OK", type = "text/plain; version=0.0.4; charset=utf-8",
              body;
  if (absl::StartsWith(request, "GET /metrics ") ||
      absl::StartsWith(request, "GET /metrics?")) {
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, registry_->Collect());
    body = out.str();
  } else if (absl::StartsWith(request, "GET ")) {
    status = "404 Not Found";
    type = "text/plain";
    body = "nbrl serves /metrics only\n";
  } else {
    status = "405 Method Not Allowed";
    type = "text/plain";
    body = "use GET /metrics\n";
  }
  std::string response = absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Type: ", type,
                                      "\r\nContent-Length: ", body.size(),
                                      "\r\nConnection: close\r\n\r\n", body);
  size_t done = 0;
  while (done < response.size()) {
    ssize_t n =
        ::send(fd, response.data() + done, response.size() - done, MSG_NOSIGNAL);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
}

std::string MetricsServer::address() const {
  if (port_ == 0) return "";
  // A wildcard address cannot be scraped from another machine: name this one.
  if (host_ == "0.0.0.0" || host_ == "::") {
    char name[256] = {};
    if (::gethostname(name, sizeof(name) - 1) == 0 && name[0] != '\0') {
      return HostPort(name, port_);
    }
  }
  return HostPort(host_, port_);
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
