// The one translation unit of nbrl_torch_pch (cmake/NbrlHelpers.cmake): the target
// exists to compile the precompiled <torch/torch.h> that every torch target reuses.
