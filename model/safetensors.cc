#include "model/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/json_util.h"
#include "common/status_macros.h"

namespace nbrl::model {
namespace {

using nlohmann::json;

// Largest header the reference implementation accepts (100 MB).
constexpr uint64_t kMaxHeaderBytes = 100 << 20;

absl::Status Corrupt(const std::string& path, const std::string& what) {
  return absl::DataLossError(absl::StrCat(path, ": corrupt safetensors file: ", what));
}

absl::StatusOr<torch::Dtype> ParseDtype(const std::string& name) {
  if (name == "F32") return torch::kFloat32;
  if (name == "F16") return torch::kFloat16;
  if (name == "BF16") return torch::kBFloat16;
  return absl::InvalidArgumentError(
      absl::StrCat("dtype ", name, " is not supported (F32, F16, BF16)"));
}

absl::StatusOr<std::string> DtypeName(torch::Dtype dtype) {
  if (dtype == torch::kFloat32) return std::string("F32");
  if (dtype == torch::kFloat16) return std::string("F16");
  if (dtype == torch::kBFloat16) return std::string("BF16");
  return absl::InvalidArgumentError(absl::StrCat("dtype ", c10::toString(dtype),
                                                 " cannot be saved (F32, F16, BF16)"));
}

struct Entry {
  std::string name;
  torch::Dtype dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

absl::StatusOr<Entry> ParseEntry(const std::string& path, const std::string& name,
                                 const json& e, uint64_t data_bytes) {
  Entry entry{name, torch::kFloat32, {}, 0, 0};
  if (!e.is_object() || !e.contains("dtype") || !e["dtype"].is_string() ||
      !e.contains("shape") || !e["shape"].is_array() || !e.contains("data_offsets") ||
      !e["data_offsets"].is_array() || e["data_offsets"].size() != 2) {
    return Corrupt(path,
                   absl::StrCat("tensor '", name,
                                "' needs dtype, shape and data_offsets [begin, end]"));
  }
  auto dtype = ParseDtype(e["dtype"].get<std::string>());
  if (!dtype.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": tensor '", name, "': ", dtype.status().message()));
  }
  entry.dtype = *dtype;
  // Element and byte counts are checked for overflow: a wrapped product could match
  // a small data range and leave torch to fail (or allocate) on the real shape.
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& d : e["shape"]) {
    if (!d.is_number_unsigned() ||
        d.get<uint64_t>() >
            static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Corrupt(path,
                     absl::StrCat("tensor '", name, "' has a bad shape: dimension ",
                                  entry.shape.size(), " is ", common::JsonForMessage(d),
                                  ", expected an integer in [0, 2^63)"));
    }
    entry.shape.push_back(d.get<int64_t>());
    overflow = __builtin_mul_overflow(numel, d.get<uint64_t>(), &numel) || overflow;
  }
  for (const json& o : e["data_offsets"]) {
    if (!o.is_number_unsigned()) {
      return Corrupt(path, absl::StrCat("tensor '", name, "' has bad data_offsets"));
    }
  }
  entry.begin = e["data_offsets"][0].get<uint64_t>();
  entry.end = e["data_offsets"][1].get<uint64_t>();
  uint64_t want = 0;
  overflow =
      __builtin_mul_overflow(numel, c10::elementSize(entry.dtype), &want) || overflow;
  if (overflow) {
    return Corrupt(path,
                   absl::StrCat("tensor '", name, "' has shape ", e["shape"].dump(),
                                ", too many bytes for any file"));
  }
  if (entry.begin > entry.end || entry.end > data_bytes) {
    return Corrupt(path, absl::StrCat("tensor '", name, "' data_offsets [", entry.begin,
                                      ", ", entry.end, "] out of bounds of ",
                                      data_bytes, " data bytes (truncated file?)"));
  }
  if (entry.end - entry.begin != want) {
    return Corrupt(path,
                   absl::StrCat("tensor '", name, "' has ", entry.end - entry.begin,
                                " bytes, its shape and dtype need ", want));
  }
  return entry;
}

// Tensors own disjoint byte ranges (the reference reader wants them back to back):
// otherwise a small file could name the same bytes many times over and make the
// reader allocate far more than the file holds.
absl::Status CheckDisjoint(const std::string& path, const std::vector<Entry>& entries) {
  std::vector<const Entry*> by_offset;
  for (const Entry& e : entries) {
    if (e.begin < e.end) by_offset.push_back(&e);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const Entry& prev = *by_offset[i - 1];
    const Entry& cur = *by_offset[i];
    if (cur.begin < prev.end) {
      return Corrupt(path, absl::StrCat("tensors '", prev.name, "' [", prev.begin, ", ",
                                        prev.end, ") and '", cur.name, "' [", cur.begin,
                                        ", ", cur.end, ") share data bytes"));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadExactly(std::ifstream& in, char* out, uint64_t n, uint64_t offset,
                         const std::string& path) {
  in.seekg(static_cast<std::streamoff>(offset));
  in.read(out, static_cast<std::streamsize>(n));
  if (!in || static_cast<uint64_t>(in.gcount()) != n) {
    return Corrupt(path,
                   absl::StrCat("could not read ", n, " bytes at offset ", offset));
  }
  return absl::OkStatus();
}

absl::StatusOr<TensorMap> ReadFileImpl(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) {
    int err = errno;
    return common::ErrnoToStatus(err, absl::StrCat("open ", path));
  }
  const uint64_t file_bytes = static_cast<uint64_t>(in.tellg());
  if (file_bytes < 8) return Corrupt(path, "shorter than the 8-byte header length");
  unsigned char len_bytes[8];
  RETURN_IF_ERROR(
      ReadExactly(in, reinterpret_cast<char*>(len_bytes), 8, /*offset=*/0, path));
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | len_bytes[i];
  if (header_bytes > kMaxHeaderBytes || header_bytes > file_bytes - 8) {
    return Corrupt(path, absl::StrCat("header length ", header_bytes,
                                      " exceeds the file (", file_bytes, " bytes)"));
  }
  std::string header(header_bytes, '\0');
  RETURN_IF_ERROR(ReadExactly(in, header.data(), header_bytes, /*offset=*/8, path));
  json j = json::parse(header, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Corrupt(path, "header is not a JSON object");
  }
  const uint64_t data_start = 8 + header_bytes;
  const uint64_t data_bytes = file_bytes - data_start;
  std::vector<Entry> entries;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    ASSIGN_OR_RETURN(Entry e, ParseEntry(path, it.key(), it.value(), data_bytes));
    entries.push_back(std::move(e));
  }
  RETURN_IF_ERROR(CheckDisjoint(path, entries));
  TensorMap out;
  for (const Entry& e : entries) {
    torch::Tensor t = torch::empty(e.shape, torch::TensorOptions().dtype(e.dtype));
    RETURN_IF_ERROR(ReadExactly(in, static_cast<char*>(t.data_ptr()), e.end - e.begin,
                                data_start + e.begin, path));
    out.emplace(e.name, std::move(t));
  }
  return out;
}

bool Exists(const std::string& path) { return std::ifstream(path).good(); }

absl::StatusOr<TensorMap> ReadIndexed(const std::string& dir) {
  const std::string index_path = absl::StrCat(dir, "/", kSafetensorsIndexFile);
  ASSIGN_OR_RETURN(std::string text, common::ReadFile(index_path));
  json j = json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") ||
      !j["weight_map"].is_object()) {
    return absl::DataLossError(absl::StrCat(
        index_path, ": expected a JSON object with a 'weight_map' object"));
  }
  std::map<std::string, std::set<std::string>> names_by_shard;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string()) {
      return absl::DataLossError(absl::StrCat(index_path, ": weight_map['", it.key(),
                                              "'] is not a file name"));
    }
    names_by_shard[it.value().get<std::string>()].insert(it.key());
  }
  TensorMap out;
  for (const auto& [shard, names] : names_by_shard) {
    const std::string shard_path = absl::StrCat(dir, "/", shard);
    ASSIGN_OR_RETURN(TensorMap tensors, ReadFileImpl(shard_path));
    for (const std::string& name : names) {
      auto it = tensors.find(name);
      if (it == tensors.end()) {
        return absl::DataLossError(absl::StrCat(index_path, " puts tensor '", name,
                                                "' in ", shard_path,
                                                ", which lacks it"));
      }
      out.emplace(name, std::move(it->second));
    }
  }
  return out;
}

absl::Status WriteFileImpl(const std::string& path, const TensorMap& tensors) {
  json header = json::object();
  header["__metadata__"] = {{"format", "pt"}};
  std::vector<torch::Tensor> blobs;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    auto dtype = DtypeName(tensor.scalar_type());
    if (!dtype.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", name, "': ", dtype.status().message()));
    }
    torch::Tensor cpu = tensor.detach().to(torch::kCPU).contiguous();
    const uint64_t bytes = cpu.numel() * cpu.element_size();
    header[name] = {{"dtype", *dtype},
                    {"shape", cpu.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    blobs.push_back(std::move(cpu));
  }
  std::string text = header.dump();
  // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
  text.append((8 - text.size() % 8) % 8, ' ');
  const std::string tmp = path + ".tmp";
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  if (!out) {
    int err = errno;
    return common::ErrnoToStatus(err, absl::StrCat("create ", tmp));
  }
  uint64_t n = text.size();
  char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out.write(len_bytes, 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const torch::Tensor& t : blobs) {
    out.write(static_cast<const char*>(t.data_ptr()),
              static_cast<std::streamsize>(t.numel() * t.element_size()));
  }
  out.close();
  if (!out) {
    std::remove(tmp.c_str());
    return absl::UnavailableError(absl::StrCat("write ", tmp, " failed"));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    return common::ErrnoToStatus(err, absl::StrCat("rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TensorMap> ReadSafetensorsFile(const std::string& path) {
  try {
    return ReadFileImpl(path);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(path, ": reading failed: ", e.what()));
  }
}

absl::StatusOr<TensorMap> ReadSafetensorsDir(const std::string& dir) {
  try {
    if (Exists(absl::StrCat(dir, "/", kSafetensorsIndexFile))) return ReadIndexed(dir);
    const std::string single = absl::StrCat(dir, "/", kSafetensorsFile);
    if (!Exists(single)) {
      return absl::NotFoundError(
          absl::StrCat(dir, ": no ", kSafetensorsFile, " or ", kSafetensorsIndexFile));
    }
    return ReadFileImpl(single);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(dir, ": reading failed: ", e.what()));
  }
}

absl::Status WriteSafetensorsFile(const std::string& path, const TensorMap& tensors) {
  try {
    return WriteFileImpl(path, tensors);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(path, ": writing failed: ", e.what()));
  }
}

absl::Status WriteSafetensorsDir(const std::string& dir, const TensorMap& tensors,
                                 const SafetensorsWriteOptions& options) {
  RETURN_IF_ERROR(common::MakeDirectories(dir));
  // Greedy split into shards of at most max_shard_bytes (a larger tensor gets its own).
  std::vector<TensorMap> shards(1);
  int64_t shard_bytes = 0, total = 0;
  for (const auto& [name, tensor] : tensors) {
    const int64_t bytes = tensor.numel() * tensor.element_size();
    total += bytes;
    if (options.max_shard_bytes > 0 && shard_bytes > 0 &&
        shard_bytes + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().emplace(name, tensor);
    shard_bytes += bytes;
  }
  if (shards.size() == 1) {
    std::remove(absl::StrCat(dir, "/", kSafetensorsIndexFile).c_str());
    return WriteSafetensorsFile(absl::StrCat(dir, "/", kSafetensorsFile), tensors);
  }
  json weight_map = json::object();
  const int n = static_cast<int>(shards.size());
  for (int i = 0; i < n; ++i) {
    const std::string file =
        absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, n);
    RETURN_IF_ERROR(WriteSafetensorsFile(absl::StrCat(dir, "/", file), shards[i]));
    for (const auto& entry : shards[i]) weight_map[entry.first] = file;
  }
  json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  std::remove(absl::StrCat(dir, "/", kSafetensorsFile).c_str());
  return common::WriteFileAtomically(absl::StrCat(dir, "/", kSafetensorsIndexFile),
                                     index.dump(2) + "\n");
}

}  // namespace nbrl::model
