#include "common/weight_reader.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/generic/generic_stub.h>

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace nbrl::common {
namespace {

using google::protobuf::internal::WireFormatLite;

constexpr char kMethod[] = "/nbrl.v1.LearnerService/SubscribeWeights";

// The slices of a message as protobuf's input stream, without copying them.
class SliceInputStream final : public google::protobuf::io::ZeroCopyInputStream {
 public:
  explicit SliceInputStream(const std::vector<grpc::Slice>& slices) : slices_(slices) {}
  bool Next(const void** data, int* size) override {
    while (index_ < slices_.size() && used_ == slices_[index_].size()) {
      ++index_;
      used_ = 0;
    }
    if (index_ == slices_.size()) return false;
    const grpc::Slice& s = slices_[index_];
    *data = s.begin() + used_;
    *size = static_cast<int>(s.size() - used_);
    count_ += *size;
    used_ = s.size();
    return true;
  }
  void BackUp(int count) override {
    used_ -= count;
    count_ -= count;
  }
  bool Skip(int count) override {
    const void* data;
    int size;
    while (count > 0 && Next(&data, &size)) {
      if (size > count) {
        BackUp(size - count);
        return true;
      }
      count -= size;
    }
    return count == 0;
  }
  int64_t ByteCount() const override { return count_; }

 private:
  const std::vector<grpc::Slice>& slices_;
  size_t index_ = 0, used_ = 0;
  int64_t count_ = 0;
};

}  // namespace

absl::Status ParseWeightChunk(grpc::ByteBuffer* raw, std::vector<grpc::Slice>* slices,
                              v1::WeightChunk* header,
                              std::vector<absl::string_view>* data) {
  header->Clear();
  data->clear();
  slices->clear();
  auto bad = [](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("weight chunk: ", why));
  };
  // The views point into these (small slices keep their bytes inline).
  if (!raw->Dump(slices).ok()) return bad("cannot read the message");
  // Pass 1: find the data fields (tag to end of bytes), keeping the last one's
  // bytes as views. Their tag and length must be as protobuf's parser wants them
  // (at most 5 bytes each); every other field is only skipped here.
  std::vector<std::pair<int, int>> cut;  // [begin, end) of each data field
  {
    SliceInputStream stream(*slices);
    google::protobuf::io::CodedInputStream in(&stream);
    while (true) {
      const int begin = in.CurrentPosition();
      const uint32_t tag = in.ReadTag();
      if (tag == 0) break;
      if (in.CurrentPosition() - begin > 5) return bad("malformed field tag");
      if (WireFormatLite::GetTagFieldNumber(tag) != v1::WeightChunk::kDataFieldNumber ||
          WireFormatLite::GetTagWireType(tag) !=
              WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
        if (!WireFormatLite::SkipField(&in, tag)) {
          return bad(
              absl::StrCat("malformed field ", WireFormatLite::GetTagFieldNumber(tag)));
        }
        continue;
      }
      const int length_at = in.CurrentPosition();
      uint32_t left = 0;
      if (!in.ReadVarint32(&left) || in.CurrentPosition() - length_at > 5 ||
          left > INT32_MAX) {
        return bad("bad length of its data");
      }
      data->clear();  // a singular field given twice: the last one counts
      while (left > 0) {
        const void* at = nullptr;
        int size = 0;
        if (!in.GetDirectBufferPointer(&at, &size) || size <= 0) {
          return bad(absl::StrCat("data truncated (", left, " bytes missing)"));
        }
        const uint32_t take = std::min<uint32_t>(left, static_cast<uint32_t>(size));
        data->emplace_back(static_cast<const char*>(at), take);
        in.Skip(static_cast<int>(take));
        left -= take;
      }
      cut.emplace_back(begin, in.CurrentPosition());
    }
    if (!in.ConsumedEntireMessage()) return bad("malformed message");
  }
  // Pass 2: everything but the data fields, byte for byte, parsed by protobuf (so
  // that it accepts and refuses exactly what protobuf would).
  std::string rest;
  size_t next_cut = 0;
  int64_t offset = 0;
  for (const grpc::Slice& slice : *slices) {
    const auto* p = reinterpret_cast<const char*>(slice.begin());
    const int64_t end = offset + static_cast<int64_t>(slice.size());
    for (int64_t at = offset; at < end;) {
      while (next_cut < cut.size() && cut[next_cut].second <= at) ++next_cut;
      if (next_cut < cut.size() && cut[next_cut].first <= at) {
        at = std::min<int64_t>(end, cut[next_cut].second);  // inside a data field
        continue;
      }
      const int64_t stop =
          next_cut < cut.size() ? std::min<int64_t>(end, cut[next_cut].first) : end;
      rest.append(p + (at - offset), static_cast<size_t>(stop - at));
      at = stop;
    }
    offset = end;
  }
  if (!header->ParseFromString(rest)) return bad("its fields do not parse");
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
  std::vector<grpc::Slice> slices;
  std::vector<absl::string_view> data;
  while (ok) {
    call->Read(&buffer, &read);
    if (!done(&read)) break;
    absl::Status parsed = ParseWeightChunk(&buffer, &slices, &header, &data);
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
