// Fuzzes the actor's raw reading of weight chunks (common/weight_reader.h) on
// arbitrary bytes cut into arbitrary gRPC slices, as they arrive from the network,
// against protobuf's own parser, and then the assembler on what was read.
//
// The first input byte picks how the rest is cut into slices (so that the data
// field straddles slice boundaries in every way). ParseWeightChunk must accept
// exactly what WeightChunk::ParseFromArray accepts, and give the same message:
// the same other fields and the data as the concatenation of its pieces. Then
// WeightAssembler::Add on (header, pieces) must behave as Add on the parsed
// message: the same status code and, for a finished version, the same bytes.
// The assemblers keep their state across inputs' chunks: each input is one
// chunk of a stream that starts anew every 8 inputs. Versions announced larger
// than 64 MiB are not assembled (the fuzzer's memory limit).
#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/weight_reader.h"
#include "common/weight_stream.h"
#include "nbrl/v1/learner.pb.h"

namespace {

namespace v1 = nbrl::v1;

void Fail(const std::string& what) {
  std::fprintf(stderr, "weight_chunk_fuzzer: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* input, size_t size) {
  if (size == 0) return 0;
  const uint8_t cut = input[0];
  const char* bytes = reinterpret_cast<const char*>(input + 1);
  const size_t n = size - 1;

  // Slices of 1 to 8 bytes in a pattern set by `cut`, or the whole as one slice.
  std::vector<grpc::Slice> slices;
  if (cut % 4 == 0) {
    slices.emplace_back(bytes, n);
  } else {
    for (size_t at = 0, k = 0; at < n; ++k) {
      const size_t len = std::min<size_t>(n - at, 1 + (cut + k * 5) % 8);
      slices.emplace_back(bytes + at, len);
      at += len;
    }
  }
  grpc::ByteBuffer raw(slices.data(), slices.size());

  v1::WeightChunk header;
  std::vector<grpc::Slice> held;
  std::vector<absl::string_view> pieces;
  const absl::Status ours =
      nbrl::common::ParseWeightChunk(&raw, &held, &header, &pieces);
  v1::WeightChunk reference;
  const bool theirs = reference.ParseFromArray(bytes, static_cast<int>(n));
  if (ours.ok() != theirs) {
    Fail(std::string("ParseWeightChunk ") + (ours.ok() ? "accepted" : "refused") +
         " what protobuf " + (theirs ? "accepted" : "refused") + ": " +
         std::string(ours.message()));
  }
  if (!theirs) return 0;
  std::string data;
  for (absl::string_view p : pieces) data.append(p.data(), p.size());
  if (data != reference.data()) Fail("the data pieces differ from protobuf's data");
  if (!header.data().empty()) Fail("the header kept data");
  v1::WeightChunk joined = header;
  joined.set_data(data);
  if (joined.SerializeAsString() != reference.SerializeAsString()) {
    Fail("the other fields differ from protobuf's");
  }

  // The assembler allocates the size a manifest announces (up to 1 TiB; failing
  // that, DataLoss) in one piece; keep to what fits the fuzzer's memory limit.
  if (reference.manifest().total_bytes() > (64u << 20)) return 0;
  static int inputs = 0;
  static auto by_pieces = std::make_unique<nbrl::common::WeightAssembler>();
  static auto by_message = std::make_unique<nbrl::common::WeightAssembler>();
  if (inputs++ % 8 == 0) {
    by_pieces = std::make_unique<nbrl::common::WeightAssembler>();
    by_message = std::make_unique<nbrl::common::WeightAssembler>();
  }
  auto a = by_pieces->Add(header, pieces);
  auto b = by_message->Add(reference);
  if (a.status().code() != b.status().code()) {
    Fail("Add(header, pieces) and Add(message) disagree: " + a.status().ToString() +
         " vs " + b.status().ToString());
  }
  if (a.ok() && (*a == nullptr) != (*b == nullptr)) {
    Fail("only one assembler finished the version");
  }
  if (a.ok() && *a != nullptr && (*a)->bytes != (*b)->bytes) {
    Fail("the assembled versions differ");
  }
  return 0;
}
