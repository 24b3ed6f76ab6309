#include "learner/checkpoint.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/crc32c.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "model/checkpoint.h"

namespace nbrl::learner {
namespace {

namespace fs = std::filesystem;
constexpr int kFormat = 1;
constexpr char kManifest[] = "manifest.json";

std::string TmpDir(const std::string& root, int64_t step) {
  return CheckpointDir(root, step) + ".tmp";
}

// Parses "<prefix><digits><suffix>"; -1 when `name` is not of that form.
int64_t ParseNumbered(const std::string& name, const std::string& prefix,
                      const std::string& suffix) {
  if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return -1;
  }
  std::string digits =
      name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  int64_t v = 0;
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), ::isdigit) ||
      !absl::SimpleAtoi(digits, &v)) {
    return -1;
  }
  return v;
}

struct FileSum {
  uint64_t bytes = 0;
  uint32_t crc = 0;
};

// Size and CRC-32C of a file, read in pieces; fsyncs it when `sync`.
absl::StatusOr<FileSum> SumFile(const std::string& path, bool sync) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("cannot open ", path));
  FileSum sum;
  std::vector<char> buf(4 << 20);
  while (true) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return common::ErrnoToStatus(err, absl::StrCat("cannot read ", path));
    }
    if (n == 0) break;
    sum.crc = common::Crc32c(buf.data(), static_cast<size_t>(n), sum.crc);
    sum.bytes += static_cast<uint64_t>(n);
  }
  if (sync && ::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    return common::ErrnoToStatus(err, absl::StrCat("cannot sync ", path));
  }
  ::close(fd);
  return sum;
}

absl::Status SyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("cannot open ", dir));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return common::ErrnoToStatus(err, absl::StrCat("cannot sync ", dir));
  return absl::OkStatus();
}

absl::Status RemoveAll(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec)
    return absl::UnavailableError(
        absl::StrCat("cannot remove ", path, ": ", ec.message()));
  return absl::OkStatus();
}

// Committed checkpoint steps under root, ascending.
std::vector<int64_t> CheckpointSteps(const std::string& root) {
  std::vector<int64_t> steps;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    int64_t s = ParseNumbered(e.path().filename().string(), "step-", "");
    if (s >= 0 && e.is_directory()) steps.push_back(s);
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

}  // namespace

std::string CheckpointDir(const std::string& root, int64_t step) {
  return absl::StrFormat("%s/step-%08d", root, step);
}

std::string JournalPath(const std::string& root, int rank, int64_t step) {
  return absl::StrFormat("%s/journal/rank-%d/from-step-%08d.log", root, rank, step);
}

absl::Status WriteRankState(const std::string& root, int64_t step, int rank,
                            const RankState& state) {
  nlohmann::json j;
  j["decisions"] = state.decisions;
  j["data_cursors"] = state.data_cursors;
  return common::WriteFileAtomically(
      absl::StrCat(TmpDir(root, step), "/rank-", rank, ".json"), j.dump());
}

absl::Status WriteModelState(const std::string& root, int64_t step,
                             const model::Transformer& policy,
                             torch::optim::Optimizer& optimizer,
                             const std::string& tokenizer_dir,
                             const std::string& run_config_yaml) {
  const std::string dir = TmpDir(root, step);
  RETURN_IF_ERROR(common::MakeDirectories(dir));
  RETURN_IF_ERROR(model::SaveTransformer(policy, dir));
  if (!tokenizer_dir.empty()) {
    for (const char* name :
         {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
          "generation_config.json", "vocab.json", "merges.txt"}) {
      const std::string from = absl::StrCat(tokenizer_dir, "/", name);
      if (!fs::exists(from)) continue;
      std::error_code ec;
      fs::copy_file(from, absl::StrCat(dir, "/", name),
                    fs::copy_options::overwrite_existing, ec);
      if (ec) {
        return absl::UnavailableError(
            absl::StrCat("cannot copy ", from, " into ", dir, ": ", ec.message()));
      }
    }
  }
  RETURN_IF_ERROR(common::WriteFileAtomically(absl::StrCat(dir, "/run_config.yaml"),
                                              run_config_yaml));
  try {
    torch::serialize::OutputArchive archive;
    optimizer.save(archive);
    archive.write("nbrl_cpu_rng_state",
                  at::detail::getDefaultCPUGenerator().get_state(), /*is_buffer=*/true);
    archive.save_to(absl::StrCat(dir, "/optimizer.pt"));
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot write ", dir, "/optimizer.pt: ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status CommitCheckpoint(const std::string& root, int64_t step, uint64_t version,
                              int world_size, int keep) {
  const std::string tmp = TmpDir(root, step);
  nlohmann::json manifest;
  manifest["format"] = kFormat;
  manifest["step"] = step;
  manifest["version"] = version;
  manifest["world_size"] = world_size;
  nlohmann::json files = nlohmann::json::object();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(tmp, ec)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    ASSIGN_OR_RETURN(FileSum sum, SumFile(e.path().string(), /*sync=*/true));
    files[name] = {{"bytes", sum.bytes}, {"crc32c", sum.crc}};
  }
  if (ec)
    return absl::UnavailableError(
        absl::StrCat("cannot list ", tmp, ": ", ec.message()));
  for (int r = 0; r < world_size; ++r) {
    if (!files.contains(absl::StrCat("rank-", r, ".json"))) {
      return absl::FailedPreconditionError(
          absl::StrCat("checkpoint ", tmp, " lacks rank-", r, ".json"));
    }
  }
  manifest["files"] = files;
  RETURN_IF_ERROR(
      common::WriteFileAtomically(absl::StrCat(tmp, "/", kManifest), manifest.dump(1)));
  RETURN_IF_ERROR(SyncDirectory(tmp));
  const std::string final_dir = CheckpointDir(root, step);
  RETURN_IF_ERROR(RemoveAll(final_dir));  // a checkpoint of an abandoned past
  if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
    return common::ErrnoToStatus(
        errno, absl::StrCat("cannot rename ", tmp, " to ", final_dir));
  }
  RETURN_IF_ERROR(SyncDirectory(root));

  // Checkpoints past this one belong to a future that was abandoned (a resume from
  // an older checkpoint, or learner.resume=never over an old run): set them aside
  // so that keeping the newest never drops this run's. Unfinished ones go.
  for (int64_t s : CheckpointSteps(root)) {
    if (s <= step) continue;
    const std::string aside = absl::StrFormat("%s/abandoned-step-%08d-%d", root, s,
                                              absl::ToUnixSeconds(absl::Now()));
    if (::rename(CheckpointDir(root, s).c_str(), aside.c_str()) != 0) {
      return common::ErrnoToStatus(
          errno, absl::StrCat("cannot set aside ", CheckpointDir(root, s)));
    }
    LOG(WARNING) << "checkpoint: " << CheckpointDir(root, s)
                 << " is from an abandoned run past step " << step << "; moved to "
                 << aside;
  }
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    if (ParseNumbered(name, "step-", ".tmp") >= 0) fs::remove_all(e.path(), ec);
  }

  // Keep the newest `keep`, and the journals from the oldest kept one on.
  std::vector<int64_t> steps = CheckpointSteps(root);
  if (keep > 0 && steps.size() > static_cast<size_t>(keep)) {
    for (size_t i = 0; i + keep < steps.size(); ++i) {
      RETURN_IF_ERROR(RemoveAll(CheckpointDir(root, steps[i])));
    }
    steps.erase(steps.begin(), steps.end() - keep);
  }
  const int64_t oldest = steps.empty() ? 0 : steps.front();
  for (const auto& rank_dir : fs::directory_iterator(root + "/journal", ec)) {
    for (const auto& f : fs::directory_iterator(rank_dir.path(), ec)) {
      int64_t s = ParseNumbered(f.path().filename().string(), "from-step-", ".log");
      if (s >= 0 && s < oldest) fs::remove(f.path(), ec);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<CheckpointInfo> VerifyCheckpoint(const std::string& dir) {
  const std::string path = absl::StrCat(dir, "/", kManifest);
  ASSIGN_OR_RETURN(std::string text, common::ReadFile(path));
  nlohmann::json m = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (m.is_discarded() || !m.is_object() || !m.contains("files") ||
      !m["files"].is_object() || !m.contains("step") ||
      !m["step"].is_number_integer() || !m.contains("version") ||
      !m["version"].is_number_unsigned() || !m.contains("world_size") ||
      !m["world_size"].is_number_integer()) {
    return absl::DataLossError(absl::StrCat(path, " is not a valid manifest"));
  }
  if (m.value("format", 0) != kFormat) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": unknown checkpoint format ", m.value("format", 0)));
  }
  for (const auto& [name, want] : m["files"].items()) {
    if (!want.is_object() || !want.contains("bytes") || !want.contains("crc32c")) {
      return absl::DataLossError(absl::StrCat(path, ": bad entry for ", name));
    }
    const std::string file = absl::StrCat(dir, "/", name);
    absl::StatusOr<FileSum> sum = SumFile(file, /*sync=*/false);
    if (!sum.ok())
      return absl::DataLossError(absl::StrCat(file, ": ", sum.status().message()));
    if (sum->bytes != want["bytes"].get<uint64_t>()) {
      return absl::DataLossError(absl::StrCat(file, " has ", sum->bytes,
                                              " bytes; the manifest says ",
                                              want["bytes"].get<uint64_t>()));
    }
    if (sum->crc != want["crc32c"].get<uint32_t>()) {
      return absl::DataLossError(absl::StrCat(file, " fails its CRC-32C check"));
    }
  }
  CheckpointInfo info;
  info.dir = dir;
  info.step = m["step"].get<int64_t>();
  info.version = m["version"].get<uint64_t>();
  info.world_size = m["world_size"].get<int>();
  return info;
}

absl::StatusOr<CheckpointInfo> FindLatestCheckpoint(const std::string& root,
                                                    std::vector<std::string>* skipped) {
  std::vector<int64_t> steps = CheckpointSteps(root);
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    absl::StatusOr<CheckpointInfo> info = VerifyCheckpoint(CheckpointDir(root, *it));
    if (info.ok()) return info;
    if (skipped) skipped->push_back(std::string(info.status().message()));
  }
  return absl::NotFoundError(absl::StrCat("no valid checkpoint under ", root));
}

absl::StatusOr<RankState> ReadRankState(const CheckpointInfo& checkpoint, int rank) {
  const std::string path = absl::StrCat(checkpoint.dir, "/rank-", rank, ".json");
  ASSIGN_OR_RETURN(std::string text, common::ReadFile(path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  RankState s;
  try {
    if (j.is_discarded()) throw std::runtime_error("not JSON");
    s.decisions = j.at("decisions").get<std::map<std::string, int>>();
    s.data_cursors = j.at("data_cursors").get<std::map<std::string, uint64_t>>();
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat(path, ": ", e.what()));
  }
  return s;
}

absl::Status LoadOptimizerState(const CheckpointInfo& checkpoint,
                                torch::optim::Optimizer& optimizer) {
  const std::string path = absl::StrCat(checkpoint.dir, "/optimizer.pt");
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    optimizer.load(archive);
    torch::Tensor rng;
    if (archive.try_read("nbrl_cpu_rng_state", rng, /*is_buffer=*/true)) {
      at::Generator gen = at::detail::getDefaultCPUGenerator();
      gen.set_state(rng);
    }
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    return absl::FailedPreconditionError(
        absl::StrCat("cannot load the optimizer state ", path, ": ", what));
  }
  return absl::OkStatus();
}

std::vector<std::string> JournalsFrom(const std::string& root, int rank, int64_t step) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  for (const auto& f :
       fs::directory_iterator(absl::StrCat(root, "/journal/rank-", rank), ec)) {
    int64_t s = ParseNumbered(f.path().filename().string(), "from-step-", ".log");
    if (s >= step) found.emplace_back(s, f.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& [s, p] : found) out.push_back(p);
  return out;
}

absl::StatusOr<std::unique_ptr<CheckpointLock>> CheckpointLock::Acquire(
    const std::string& root, int rank) {
  const std::string path = absl::StrCat(root, "/LOCK-rank-", rank);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("cannot open ", path));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {0};
    ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
    ::close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("another learner of rank ", rank, " (pid ",
                     n > 0 ? absl::StripAsciiWhitespace(buf) : "?", ") is using ", root,
                     "; stop it first or give this one another run.dir"));
  }
  const std::string pid = absl::StrCat(::getpid(), "\n");
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // The pid is only for the message above; the lock itself holds.
  }
  return std::unique_ptr<CheckpointLock>(new CheckpointLock(fd));
}

CheckpointLock::~CheckpointLock() { ::close(fd_); }

uint64_t ReadPublishedVersion(const std::string& root) {
  absl::StatusOr<std::string> text = common::ReadFile(root + "/published-version");
  uint64_t v = 0;
  if (!text.ok() || !absl::SimpleAtoi(*text, &v)) return 0;
  return v;
}

absl::Status WritePublishedVersion(const std::string& root, uint64_t version) {
  return common::WriteFileAtomically(root + "/published-version",
                                     absl::StrCat(version, "\n"));
}

}  // namespace nbrl::learner
