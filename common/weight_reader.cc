#include "common/weight_reader.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace nbrl::common {
namespace {

using google::protobuf::internal::WireFormatLite;

constexpr char kMethod[] = "/nbrl.v1.LearnerService/SubscribeWeights";

}  // namespace

absl::Status ParseWeightChunk(grpc::ByteBuffer* raw, v1::WeightChunk* header,
                              std::vector<absl::string_view>* data) {
  header->Clear();
  data->clear();
  grpc::ProtoBufferReader reader(raw);
  if (!reader.status().ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "weight chunk: cannot read the message: ", reader.status().error_message()));
  }
  google::protobuf::io::CodedInputStream in(&reader);
  // Every field but the data is copied out as it came and parsed by protobuf.
  std::string rest;
  {
    google::protobuf::io::StringOutputStream rest_stream(&rest);
    google::protobuf::io::CodedOutputStream out(&rest_stream);
    while (const uint32_t tag = in.ReadTag()) {
      if (WireFormatLite::GetTagFieldNumber(tag) == v1::WeightChunk::kDataFieldNumber &&
          WireFormatLite::GetTagWireType(tag) ==
              WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
        uint32_t left = 0;
        if (!in.ReadVarint32(&left)) {
          return absl::InvalidArgumentError("weight chunk: bad length of its data");
        }
        data->clear();  // a repeated singular field: the last one counts
        while (left > 0) {
          const void* at = nullptr;
          int size = 0;
          if (!in.GetDirectBufferPointer(&at, &size) || size <= 0) {
            return absl::InvalidArgumentError(absl::StrCat(
                "weight chunk: data truncated (", left, " bytes missing)"));
          }
          const uint32_t take = std::min<uint32_t>(left, static_cast<uint32_t>(size));
          data->emplace_back(static_cast<const char*>(at), take);
          in.Skip(static_cast<int>(take));
          left -= take;
        }
      } else if (!WireFormatLite::SkipField(&in, tag, &out)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "weight chunk: malformed field ", WireFormatLite::GetTagFieldNumber(tag)));
      }
    }
    if (!in.ConsumedEntireMessage()) {
      return absl::InvalidArgumentError("weight chunk: malformed message");
    }
  }
  if (!header->ParseFromString(rest)) {
    return absl::InvalidArgumentError("weight chunk: its fields do not parse");
  }
  return absl::OkStatus();
}

grpc::Status ReadWeightStream(
    const std::shared_ptr<grpc::Channel>& channel, grpc::ClientContext* context,
    const v1::SubscribeWeightsRequest& request, WeightAssembler* assembler,
    const std::function<void(std::shared_ptr<WeightVersion>)>& on_version) {
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  // One operation in flight at a time: start it, then wait for its tag.
  auto done = [&cq](void* tag) {
    void* got = nullptr;
    bool ok = false;
    CHECK(cq.Next(&got, &ok));
    CHECK_EQ(got, tag);
    return ok;
  };
  int start, write, writes_done, read, finish;  // their addresses are the tags
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(context, kMethod, &cq);
  call->StartCall(&start);
  bool ok = done(&start);
  const std::string serialized = request.SerializeAsString();
  grpc::Slice request_slice(serialized);
  grpc::ByteBuffer buffer(&request_slice, 1);
  if (ok) {
    call->Write(buffer, &write);
    ok = done(&write);
  }
  if (ok) {
    call->WritesDone(&writes_done);
    ok = done(&writes_done);
  }
  grpc::Status corrupt;
  v1::WeightChunk header;
  std::vector<absl::string_view> data;
  while (ok) {
    call->Read(&buffer, &read);
    if (!done(&read)) break;
    absl::Status parsed = ParseWeightChunk(&buffer, &header, &data);
    absl::StatusOr<std::shared_ptr<WeightVersion>> version =
        parsed.ok() ? assembler->Add(header, data) : parsed;
    if (!version.ok()) {
      corrupt = grpc::Status(grpc::StatusCode::DATA_LOSS,
                             std::string(version.status().message()));
      context->TryCancel();
      break;
    }
    if (*version != nullptr) on_version(*std::move(version));
  }
  grpc::Status status;
  call->Finish(&status, &finish);
  (void)done(&finish);
  cq.Shutdown();
  void* tag;
  while (cq.Next(&tag, &ok)) {
  }
  return corrupt.ok() ? status : corrupt;
}

}  // namespace nbrl::common
