#include "model/checkpoint.h"

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "model/safetensors.h"

namespace nbrl::model {

absl::StatusOr<std::unique_ptr<Transformer>> LoadTransformer(
    const std::string& dir, const TransformerOptions& options) {
  ASSIGN_OR_RETURN(ModelConfig config,
                   LoadModelConfig(absl::StrCat(dir, "/config.json")));
  ASSIGN_OR_RETURN(TensorMap tensors, ReadSafetensorsDir(dir));
  ASSIGN_OR_RETURN(std::unique_ptr<Transformer> model,
                   Transformer::Create(config, options));
  RETURN_IF_ERROR(model->LoadStateDict(tensors, dir));
  LOG(INFO) << "loaded " << dir << ": " << config.model_type << ", "
            << config.num_hidden_layers << " layers, hidden " << config.hidden_size
            << ", " << ParameterCount(config) << " parameters, on "
            << model->device().str() << " as " << c10::toString(model->dtype());
  return model;
}

absl::Status SaveTransformer(const Transformer& model, const std::string& dir,
                             const SaveOptions& options) {
  ModelConfig config = model.config();
  if (options.dtype == torch::kFloat32) {
    config.torch_dtype = "float32";
  } else if (options.dtype == torch::kBFloat16) {
    config.torch_dtype = "bfloat16";
  } else if (options.dtype == torch::kFloat16) {
    config.torch_dtype = "float16";
  } else {
    return absl::InvalidArgumentError(
        "save dtype must be float32, bfloat16 or float16");
  }
  TensorMap tensors;
  try {
    for (const auto& [name, tensor] : model.StateDict()) {
      tensors.emplace(name, tensor.detach().to(torch::kCPU, options.dtype));
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("saving to ", dir, " failed: ", e.what_without_backtrace()));
  }
  RETURN_IF_ERROR(WriteSafetensorsDir(dir, tensors, {options.max_shard_bytes}));
  return common::WriteFileAtomically(absl::StrCat(dir, "/config.json"),
                                     ModelConfigToJson(config));
}

}  // namespace nbrl::model
