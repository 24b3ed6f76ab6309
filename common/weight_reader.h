// Follows a learner's SubscribeWeights stream on raw bytes, as actors do.
//
// The generated stub would parse each WeightChunk into a message (copying its
// data out of gRPC's receive buffers) and the assembler would copy it again into
// the version. Here the chunk's other fields are parsed by protobuf as usual, but
// its data stays in the receive buffers as pieces that WeightAssembler checksums
// and copies into the version once.
//
//   grpc::ClientContext ctx;
//   WeightAssembler assembler;
//   grpc::Status st = ReadWeightStream(channel, &ctx, request, &assembler,
//       [](std::shared_ptr<WeightVersion> v) { ... apply v ... });
#ifndef NBRL_COMMON_WEIGHT_READER_H_
#define NBRL_COMMON_WEIGHT_READER_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/weight_stream.h"
#include "nbrl/v1/learner.pb.h"

namespace nbrl::common {

// Splits a serialized nbrl.v1.WeightChunk into its other fields (`header`, data
// empty) and its data as views into `slices`, which it fills with `raw`'s slices
// (references, not copies; a small slice holds its bytes inline, so the views are
// valid while `*slices` is unchanged).
// Accepts exactly what protobuf's parser accepts (the fields other than the data
// are handed to it byte for byte); InvalidArgument naming the problem otherwise.
absl::Status ParseWeightChunk(grpc::ByteBuffer* raw, std::vector<grpc::Slice>* slices,
                              v1::WeightChunk* header,
                              std::vector<absl::string_view>* data);

// Calls SubscribeWeights on `channel` with `request` under `context` and feeds
// every chunk to `assembler`, calling `on_version` (on this thread) with each
// complete version, until the stream ends. Returns the call's status, or
// DATA_LOSS naming the problem (after cancelling the call) for a chunk that does
// not parse or does not fit the version being assembled. Cancel `context` from
// another thread to stop it.
grpc::Status ReadWeightStream(
    const std::shared_ptr<grpc::Channel>& channel, grpc::ClientContext* context,
    const v1::SubscribeWeightsRequest& request, WeightAssembler* assembler,
    const std::function<void(std::shared_ptr<WeightVersion>)>& on_version);

}  // namespace nbrl::common

#endif  // NBRL_COMMON_WEIGHT_READER_H_
