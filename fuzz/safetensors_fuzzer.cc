// Fuzzes the safetensors reader (model/safetensors.h) on arbitrary file contents:
// the header length, the JSON header (dtypes, shapes, data offsets) and the data.
//
// The input is written to a file in a scratch directory on tmpfs (/dev/shm when
// there is one) and read back with ReadSafetensorsFile. A failure must carry one of
// the documented codes (DataLoss, InvalidArgument); Internal means an exception
// escaped the checks and is a finding. What reads successfully must hold tensors of
// exactly the bytes the header promised, and must survive WriteSafetensorsFile and a
// second read bit for bit.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "model/safetensors.h"

namespace {

void Fail(const std::string& what) {
  std::fprintf(stderr, "safetensors_fuzzer: %s\n", what.c_str());
  std::abort();
}

const std::string& ScratchDir() {
  static const std::string* dir = [] {
    const char* base = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string pattern = std::string(base) + "/nbrl-safetensors-fuzz-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) Fail("mkdtemp failed");
    return new std::string(pattern);
  }();
  return *dir;
}

void RemoveScratch() {
  for (const char* name : {"/in.safetensors", "/out.safetensors"}) {
    std::remove((ScratchDir() + name).c_str());
  }
  ::rmdir(ScratchDir().c_str());
}

bool SameBytes(const torch::Tensor& a, const torch::Tensor& b) {
  return a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() &&
         a.nbytes() == b.nbytes() &&
         (a.nbytes() == 0 || std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  ScratchDir();
  std::atexit(RemoveScratch);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string in = ScratchDir() + "/in.safetensors";
  {
    std::ofstream f(in, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!f) Fail("cannot write " + in);
  }
  absl::StatusOr<nbrl::model::TensorMap> read = nbrl::model::ReadSafetensorsFile(in);
  if (!read.ok()) {
    if (!absl::IsDataLoss(read.status()) && !absl::IsInvalidArgument(read.status())) {
      Fail("unexpected status: " + read.status().ToString());
    }
    return 0;
  }
  uint64_t total = 0;
  for (const auto& [name, t] : *read) {
    if (!t.is_contiguous() ||
        static_cast<size_t>(t.numel() * t.element_size()) != t.nbytes()) {
      Fail("tensor '" + name + "' is not a plain contiguous buffer");
    }
    total += t.nbytes();
  }
  // Tensors own disjoint byte ranges of the data section (no amplification).
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | data[i];
  if (total > size - 8 - header_bytes) Fail("more tensor bytes than data bytes");

  const std::string out = ScratchDir() + "/out.safetensors";
  if (absl::Status st = nbrl::model::WriteSafetensorsFile(out, *read); !st.ok()) {
    Fail("writing back what was read: " + st.ToString());
  }
  absl::StatusOr<nbrl::model::TensorMap> again = nbrl::model::ReadSafetensorsFile(out);
  if (!again.ok()) Fail("reading back what was written: " + again.status().ToString());
  if (again->size() != read->size()) Fail("round trip changed the tensor count");
  for (const auto& [name, t] : *read) {
    auto it = again->find(name);
    if (it == again->end() || !SameBytes(t, it->second)) {
      Fail("round trip changed tensor '" + name + "'");
    }
  }
  return 0;
}
