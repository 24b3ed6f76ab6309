// The nbrl version, from the project() call in CMakeLists.txt.
#ifndef NBRL_COMMON_VERSION_H_
#define NBRL_COMMON_VERSION_H_

namespace nbrl {

#ifndef NBRL_VERSION
#error "NBRL_VERSION must be defined by the build"
#endif
inline constexpr char kVersion[] = NBRL_VERSION;

}  // namespace nbrl

#endif  // NBRL_COMMON_VERSION_H_
